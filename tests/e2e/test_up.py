"""The README's first command: `flamenco up --demo` renders the demo scene and stops cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from farmkit import wait_until
from upkit import free_offset, processes_mentioning

DEMO_FRAMES = 24  # what `flamenco up --demo` asks for


@pytest.mark.blender
def test_flamenco_up_renders_the_demo_scene_and_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "farm"
    blenders_before = set(processes_mentioning("blender_child.py"))
    env = {**os.environ, "HOME": str(tmp_path / "home"), "COLUMNS": "300"}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flamenco",
            "up",
            "--demo",
            "--data-dir",
            str(data_dir),
            "--port-offset",
            str(free_offset()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    output: list[str] = []
    finished = threading.Event()

    def read() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            output.append(line)
            if "Demo job" in line and "Its frames are in" in line:
                finished.set()
        finished.set()  # the process ended

    threading.Thread(target=read, daemon=True).start()
    try:
        assert finished.wait(600), "".join(output)
        text = "".join(output)
        assert "Demo job completed" in text, text
        (folder,) = (data_dir / "server" / "outputs").glob("Flamenco-demo-*")
        frames = sorted(folder.glob("*.png"))
        assert len(frames) == DEMO_FRAMES, text
        images = [Image.open(path).convert("RGB") for path in frames]
        assert len({image.size for image in images}) == 1
        assert all(image.getextrema() != ((0, 0), (0, 0), (0, 0)) for image in images)
        assert ImageChops.difference(images[0], images[-1]).getbbox() is not None  # it moves

        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0, "".join(output)
        # Server, Manager, Dashboard, Workers and their Blenders: none is left behind (a
        # Blender exits when its Worker does, which the kernel tells it a moment later).
        wait_until(
            lambda: (
                not (set(processes_mentioning(str(data_dir), "blender_child.py")) - blenders_before)
            ),
            30,
            "every process of the farm gone",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
