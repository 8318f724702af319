"""A big EXR frame travels Worker → Manager → Server without the Manager's or the Server's
memory rising with its size (issue 15 §5: at most 50 MB each for a 200 MB frame).

A real Server and Manager; this test is the Worker, speaking HTTP. The frame is a ~100 MB
uncompressed float EXR; before the frame check and thumbnail read it in strips, the Server's
resident memory rose by about five times the file (~500 MB here). Each process's peak is
reset (/proc/PID/clear_refs) just before the upload and read (VmHWM) once the Server lists
the frame. The thumbnail the Server made is the JPEG of the one made the old way (the whole
beauty read at once, then Pillow's thumbnail), pixel for pixel.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import OpenEXR
import pytest
from PIL import Image

from farmkit import TestFarm, wait_until
from flamenco.images import linear_to_srgb8

pytestmark = pytest.mark.blender  # the job is one of the demo scene

WIDTH, HEIGHT = 2400, 2600  # RGBA float32: ~100 MB
RISE_LIMIT_MB = 50


def write_big_exr(path: Path) -> None:
    """Ramps with noise and some over-bright pixels: a thumbnail of it shows if rows, columns
    or the sRGB curve go wrong."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    pixels = np.empty((HEIGHT, WIDTH, 4), np.float32)
    pixels[..., 0] = x / WIDTH * 1.2
    pixels[..., 1] = y / HEIGHT
    pixels[..., 2] = ((x // 200 + y // 200) % 2) * 0.5
    pixels[..., 3] = 1.0
    pixels[..., :3] += np.random.default_rng(5).random((HEIGHT, WIDTH, 3), np.float32) * 0.1
    header = {"compression": OpenEXR.NO_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGBA": pixels}).write(str(path))


def old_way_thumbnail(path: Path) -> np.ndarray:
    pixels = OpenEXR.File(str(path)).parts[0].channels["RGBA"].pixels
    img = Image.fromarray(linear_to_srgb8(pixels[:, :, :3].astype(np.float32)), "RGB")
    img.thumbnail((256, 256))
    return np.asarray(img)


def reset_peak(pid: int) -> int:
    """Make the process's peak resident memory its present one; return that, in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kb(pid, "VmRSS") * 1024


def peak(pid: int) -> int:
    return status_kb(pid, "VmHWM") * 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[TestFarm]:
    with TestFarm(tmp_path / "farm") as farm:
        farm.start_server()
        farm.start_manager()
        yield farm


def test_a_big_exr_frame_passes_through_manager_and_server_in_bounded_memory(
    site: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    exr = tmp_path / "frame_000001.exr"
    write_big_exr(exr)
    data_sha = hashlib.sha256()
    with exr.open("rb") as f:
        while block := f.read(1 << 20):
            data_sha.update(block)
    size = exr.stat().st_size
    assert size > 99_000_000

    done = site.cli("submit", str(demo_scene), "--json", "--frames", "1", "--chunk", "1")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    worker = site.join_worker("big")
    reply = httpx.post(
        f"{site.manager_url}/api/v1/worker/sync",
        json={"want_task": True, "wait_s": 20},
        headers=worker,
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    task_id = reply.json()["assignment"]["task_id"]
    server_pid, manager_pid = site.procs[0].pid, site.managers["local"].proc.pid
    before = {"server": reset_peak(server_pid), "manager": reset_peak(manager_pid)}

    def chunks() -> Iterator[bytes]:
        with exr.open("rb") as f:
            while block := f.read(1 << 20):
                yield block

    put = httpx.put(
        f"{site.manager_url}/api/v1/worker/tasks/{task_id}/frames/1",
        params={"filename": exr.name},
        content=chunks(),
        headers={**worker, "X-Flamenco-SHA256": data_sha.hexdigest(), "Content-Length": str(size)},
        timeout=120,
    )
    assert put.status_code == 201, put.text
    api = httpx.Client(
        base_url=site.server_url, headers={"Authorization": f"Bearer {site.token}"}, timeout=30
    )

    def listed() -> list[dict[str, Any]]:
        return api.get(f"/api/v1/jobs/{job_id}/frames").json()

    frames = wait_until(listed, 120, "the Server to list the big frame")
    rise_mb = {
        "server": (peak(server_pid) - before["server"]) / 1e6,
        "manager": (peak(manager_pid) - before["manager"]) / 1e6,
    }

    assert [(f["frame"], f["size"], f["width"], f["height"]) for f in frames] == [
        (1, size, WIDTH, HEIGHT)
    ]
    assert all(rise <= RISE_LIMIT_MB for rise in rise_mb.values()), rise_mb
    thumbnail = api.get(f"/api/v1/jobs/{job_id}/frames/1/thumbnail")
    assert thumbnail.status_code == 200
    got = np.asarray(Image.open(io.BytesIO(thumbnail.content)))
    expected = old_way_thumbnail(exr)
    assert expected.shape == (256, 236, 3)
    encoded = io.BytesIO()  # the Server's JPEG of the same pixels decodes to the same pixels
    Image.fromarray(expected, "RGB").save(encoded, "JPEG", quality=80)
    assert np.array_equal(got, np.asarray(Image.open(encoded)))
