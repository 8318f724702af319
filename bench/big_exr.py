"""What a big EXR frame costs each reader of it: peak memory and time.

    .venv/bin/python bench/big_exr.py [--mb 200] [--tiles 4] [--code SRC ...] [--json PATH]

One uncompressed RGBA float EXR of about --mb megabytes (smooth ramps with noise), and --tiles
copies of it as a frame's tiles. Each step runs in a fresh child process, which reports its
peak RSS above what it had after its imports (getrusage) and its wall time:

- check: `check_frame` (headers and offset table);
- check_blank: `check_frame` with check_blank (every beauty pixel compared);
- thumbnail: the Server's 256-pixel JPEG (`save_jpeg(..., max_side=256)`);
- viewer: the Dashboard viewer's full-size JPEG (`save_jpeg` without max_side);
- tile_join: `join_tiles` of the --tiles tiles.

Each --code (a `src` folder of a checkout, e.g. a git worktree of an older commit) runs every
step in turn, so the code before and after a change are measured side by side in one run;
without --code the installed flamenco is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STEPS = ("check", "check_blank", "thumbnail", "viewer", "tile_join")

WRITER = """
import sys, numpy as np, OpenEXR
mb, path = float(sys.argv[1]), sys.argv[2]
width = 4000
height = max(1, int(mb * 1e6 / (width * 16)))
y, x = np.mgrid[0:height, 0:width].astype(np.float32)
rgba = np.empty((height, width, 4), np.float32)
rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = x / width, y / height, 0.5, 1.0
rgba[..., :3] += np.random.default_rng(1).random((height, width, 3), np.float32) * 0.1
header = {"compression": OpenEXR.NO_COMPRESSION, "type": OpenEXR.scanlineimage}
OpenEXR.File(header, {"RGBA": rgba}).write(path)
"""

STEP = """
import json, resource, sys, time
from pathlib import Path
from flamenco.frame_check import FrameExpectation, check_frame
from flamenco.images import save_jpeg
from flamenco.tile_join import join_tiles

step, frame, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
tiles = [Path(p) for p in sys.argv[4:]]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if step == "check":
    check_frame(frame, "f.exr", 1, FrameExpectation())
elif step == "check_blank":
    check_frame(frame, "f.exr", 1, FrameExpectation(check_blank=True))
elif step == "thumbnail":
    save_jpeg(frame, out / "thumb.jpg", 80, max_side=256)
elif step == "viewer":
    save_jpeg(frame, out / "view.jpg", 85)
elif step == "tile_join":
    join_tiles(tiles, out / "joined.exr")
seconds = time.perf_counter() - t
rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024 / 1e6
print(json.dumps({"peak_rise_mb": round(rise, 1), "seconds": round(seconds, 2)}))
"""


def run_step(step: str, frame: Path, tiles: list[Path], code: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code
    with tempfile.TemporaryDirectory(prefix="flamenco-bigexr-out-") as out:
        done = subprocess.run(
            [sys.executable, "-c", STEP, step, str(frame), out, *map(str, tiles)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{step} with {code or 'installed'} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--code", action="append", default=[], help="a src folder to measure")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.mb <= 0 or args.tiles < 2:
        parser.error("--mb must be more than 0 and --tiles at least 2.")
    codes: list[str | None] = list(args.code) or [None]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="flamenco-bigexr-") as tmp:
        frame = Path(tmp) / "frame.exr"
        subprocess.run([sys.executable, "-c", WRITER, str(args.mb), str(frame)], check=True)
        tiles = [Path(tmp) / f"tile-{i}.exr" for i in range(args.tiles)]
        for tile in tiles:
            shutil.copyfile(frame, tile)
        results["frame_bytes"] = frame.stat().st_size
        for step in STEPS:  # each step for every code in turn: side by side
            for code in codes:
                label = code or "installed"
                results.setdefault(label, {})[step] = run_step(step, frame, tiles, code)
                print(step, label, results[label][step], flush=True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
