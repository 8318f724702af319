"""Builds the demo .blend by running build_scene.py in the worker's own Blender."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from flamenco.worker.blender import BlenderInstall, child_env

BUILD_SCRIPT = Path(__file__).with_name("build_scene.py")
BUILD_TIMEOUT = 180.0
OUTPUT_TAIL_CHARS = 3000


class DemoSceneError(RuntimeError):
    """Blender could not build the demo scene."""


def build_demo_scene(
    install: BlenderInstall,
    out: Path,
    frames: int = 10,
    resolution: tuple[int, int] = (320, 180),
    samples: int = 16,
    heavy: bool = False,
    user_resources: Path | None = None,
) -> Path:
    """Write an animated Cycles demo scene to `out` and return its absolute path.

    `heavy` replaces resolution and samples with a setting that takes about 1 s per frame
    on a 2-core CPU, for demonstrating progress and load balancing.
    """
    out = Path(out).absolute()
    args = ["--out", str(out), "--frames", str(frames), "--samples", str(samples)]
    args += ["--resolution", str(resolution[0]), str(resolution[1])]
    if heavy:
        args.append("--heavy")
    argv = install.script_argv(BUILD_SCRIPT, args)
    if user_resources is not None:
        _run(argv, user_resources)
    else:
        with tempfile.TemporaryDirectory(prefix="flamenco-demo-") as tmp:
            _run(argv, Path(tmp))
    if not out.is_file():
        raise DemoSceneError(f"Blender reported success but {out} was not written.")
    return out


def _run(argv: list[str], user_resources: Path) -> None:
    try:
        done = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=BUILD_TIMEOUT,
            env=child_env(user_resources),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.output)
        raise DemoSceneError(
            f"Building the demo scene took over {BUILD_TIMEOUT:.0f} s:\n{output}"
        ) from exc
    except OSError as exc:
        raise DemoSceneError(f"Could not start Blender ({argv[0]}): {exc}") from exc
    if done.returncode != 0:
        raise DemoSceneError(
            f"Blender failed to build the demo scene (exit code {done.returncode}):\n"
            f"{done.stdout[-OUTPUT_TAIL_CHARS:]}"
        )


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        output = output.decode("utf-8", errors="replace")
    return (output or "")[-OUTPUT_TAIL_CHARS:]
