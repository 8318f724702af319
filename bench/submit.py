"""What a submission costs: time, reads and temporary space, against the code before a change.

    .venv/bin/python bench/submit.py [--before REF] [--texture-mib 64] [--textures 16]
        [--repeat 3] [--json PATH] [--keep DIR]

A project of --textures PNGs of random noise (--texture-mib MiB each; noise does not
compress) and a small .blend referencing them (built with bpy, relative paths) is written
once; every file is then dated an hour back, as a project's files usually are. Then, each
against a Server of its own (tests/farmkit.py, real processes):

(ref)  the floor: every file hashed in this process (SHA-256, warm page cache), and every
       file uploaded over loopback to an empty Server (`PUT /api/v1/blobs/{sha}`, the
       client's `upload_blob`), one after the other; medians of --repeat rounds, each with a
       Server of its own. Pending writes are flushed (sync) before each round and before
       each first submission.
(tree) the `flamenco` CLI of this working tree, with its own TMPDIR and XDG_CACHE_HOME:
       the first `flamenco submit`, then --repeat pairs of `flamenco jobs list` and an
       unchanged resubmission (medians, and the median difference within a pair).
(REF)  with --before REF: the same with the CLI of that commit, run from a `git worktree`
       (removed at the end) through PYTHONPATH, against a Server of its own; its pairs
       alternate with this tree's, so both see the same load.

During each submission a thread sums the sizes of the files under its TMPDIR every 5 ms;
the peak is the temporary space used (a sample; a file living less than 5 ms may be missed).
Each CLI call's CPU time (user + system, from getrusage of the children) is reported too: on
a loaded machine it tells the cost better than the wall time.

Targets (issue 15): unchanged resubmission - jobs list <= 0.3 s; first submission <= 1.3 x
(hash + upload); temporary space <= the size of the .blend files. The load average before
and after is printed: on a shared machine, run it again when the machine is quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from simfarm import BenchFarm, busy_cores_between, cpu_ticks  # noqa: E402  (+ tests/ on sys.path)
from transfer import build_scene  # noqa: E402

from flamenco.addon.render_flamenco.hash_cache import sha256_file  # noqa: E402

console = Console(width=130)
HOUR_NS = 3600 * 10**9
MIB = 1024 * 1024


class TempSampler:
    """The largest total size of the files under `folder`, sampled every 5 ms."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _size(self) -> int:
        total = 0
        for root, _, names in os.walk(self.folder):
            for name in names:
                with suppress(FileNotFoundError):  # removed since the listing
                    total += os.lstat(os.path.join(root, name)).st_size
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            self._stop.wait(0.005)

    def __enter__(self) -> TempSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_cli(farm: BenchFarm, env: dict[str, str], *args: str) -> tuple[float, Any, float]:
    """Wall seconds, the finished process, and its CPU seconds (user + system): the CPU
    time barely moves with other processes' load, the wall time does."""
    cpu = children_cpu_s()
    started = time.perf_counter()
    done = farm.cli(*args, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"flamenco {' '.join(args)} failed:\n{done.stderr}")
    return seconds, done, children_cpu_s() - cpu


def submit(farm: BenchFarm, env: dict[str, str], blend: Path, temp: Path) -> dict[str, Any]:
    with TempSampler(temp) as sampler:
        seconds, done, cpu = timed_cli(farm, env, "submit", str(blend), "--frames", "1")
    return {
        "s": seconds,
        "cpu_s": cpu,
        "temp_peak_bytes": sampler.peak,
        "said": done.stderr.strip(),
    }


@dataclass
class Variant:
    """One CLI (this tree's or a commit's) with its own Server, TMPDIR and hash cache."""

    code: str
    root: Path
    env: dict[str, str]
    farm: BenchFarm
    first: dict[str, Any] = field(default_factory=dict)
    list_s: list[float] = field(default_factory=list)
    list_cpu_s: list[float] = field(default_factory=list)
    again: list[dict[str, Any]] = field(default_factory=list)
    busy_cores: list[float] = field(default_factory=list)  # others' load during the pairs

    @property
    def temp(self) -> Path:
        return self.root / "tmp"

    def row(self) -> dict[str, Any]:
        pairs = [a["s"] - ls for a, ls in zip(self.again, self.list_s, strict=True)]
        peaks = [self.first["temp_peak_bytes"], *(a["temp_peak_bytes"] for a in self.again)]
        return {
            "code": self.code,
            "jobs_list_s": statistics.median(self.list_s),
            "first_submit_s": self.first["s"],
            "unchanged_submit_s": statistics.median(a["s"] for a in self.again),
            "unchanged_minus_list_s": statistics.median(pairs),
            "pairs_s": [[ls, a["s"]] for a, ls in zip(self.again, self.list_s, strict=True)],
            "busy_cores_median": statistics.median(self.busy_cores),
            "jobs_list_cpu_s": statistics.median(self.list_cpu_s),
            "unchanged_cpu_s": statistics.median(a["cpu_s"] for a in self.again),
            "first_cpu_s": self.first["cpu_s"],
            "temp_peak_bytes": max(peaks),
            "first_said": self.first["said"],
            "unchanged_said": self.again[-1]["said"],
        }


def start_variant(stack: ExitStack, code: str, root: Path, pythonpath: str | None) -> Variant:
    (root / "tmp").mkdir(parents=True)
    env = {"TMPDIR": str(root / "tmp"), "XDG_CACHE_HOME": str(root / "cache")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    farm = stack.enter_context(BenchFarm(root / "farm"))
    farm.start_server()
    return Variant(code, root, env, farm)


def measure_cli(variants: list[Variant], blend: Path, repeat: int) -> None:
    """Each variant's first submission, then `repeat` rounds, the variants interleaved, of
    (`jobs list`, unchanged resubmission) pairs: on a shared machine both of a pair see
    about the same load."""
    for v in variants:
        os.sync()  # no writes of an earlier step still pending
        v.first = submit(v.farm, v.env, blend, v.temp)
    for _ in range(repeat):
        for v in variants:
            ticks = cpu_ticks()
            seconds, _, cpu = timed_cli(v.farm, v.env, "jobs", "list")
            v.list_s.append(seconds)
            v.list_cpu_s.append(cpu)
            v.again.append(submit(v.farm, v.env, blend, v.temp))
            v.busy_cores.append(busy_cores_between(ticks, cpu_ticks()))


def measure_floor(root: Path, files: list[Path], repeat: int) -> dict[str, Any]:
    """Medians of `repeat` rounds, each uploading to an empty Server of its own."""
    hash_s, upload_s = [], []
    for round_ in range(repeat):
        os.sync()  # no writes of an earlier step still pending
        started = time.perf_counter()
        hashes = [sha256_file(p) for p in files]
        hash_s.append(time.perf_counter() - started)
        farm_root = root / f"farm-{round_}"
        with BenchFarm(farm_root) as farm:
            farm.start_server()
            api = farm.api()
            started = time.perf_counter()
            for path, sha in zip(files, hashes, strict=True):
                api.upload_blob(path, sha)
            upload_s.append(time.perf_counter() - started)
        shutil.rmtree(farm_root, ignore_errors=True)
    return {
        "hash_s": statistics.median(hash_s),
        "upload_s": statistics.median(upload_s),
        "hash_runs_s": hash_s,
        "upload_runs_s": upload_s,
    }


@contextmanager
def worktree(ref: str, where: Path) -> Iterator[Path]:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)],
            check=False,
            capture_output=True,
        )


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = time.perf_counter()
    blend, images = build_scene(
        work / "project", args.textures * args.texture_mib * MIB / 1e6, args.textures
    )
    for path in [blend, *images]:
        mtime = path.stat().st_mtime_ns - HOUR_NS
        os.utime(path, ns=(mtime, mtime))
    files = [blend, *images]
    project_bytes = sum(p.stat().st_size for p in files)
    console.print(
        f"project: {len(files)} files, {project_bytes / 1e9:.2f} GB "
        f"(built in {time.perf_counter() - started:.0f} s); .blend {blend.stat().st_size} B"
    )
    floor = measure_floor(work / "ref", files, args.repeat)
    with ExitStack() as stack:
        variants = []
        if args.before:
            tree = stack.enter_context(worktree(args.before, work / "before-tree"))
            variants.append(start_variant(stack, args.before, work / "before", str(tree / "src")))
        variants.append(start_variant(stack, "this tree", work / "after", None))
        measure_cli(variants, blend, args.repeat)
        rows = [v.row() for v in variants]
    return {
        "files": len(files),
        "project_bytes": project_bytes,
        "blend_bytes": blend.stat().st_size,
        **floor,
        "rows": rows,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpus": os.cpu_count(),
    }


def report(result: dict[str, Any]) -> None:
    floor = result["hash_s"] + result["upload_s"]
    console.print(
        f"floor: hash {result['hash_s']:.2f} s + loopback upload {result['upload_s']:.2f} s "
        f"= {floor:.2f} s; 1.3 x = {1.3 * floor:.2f} s"
    )
    table = Table(
        "code",
        "jobs list s",
        "first submit s",
        "first / floor",
        "unchanged submit s",
        "unchanged - list s (pairs)",
        "temp peak",
    )
    for row in result["rows"]:
        table.add_row(
            row["code"],
            f"{row['jobs_list_s']:.2f}",
            f"{row['first_submit_s']:.2f}",
            f"{row['first_submit_s'] / floor:.2f}",
            f"{row['unchanged_submit_s']:.2f}",
            f"{row['unchanged_minus_list_s']:+.2f}",
            f"{row['temp_peak_bytes']:,} B",
        )
    console.print(table)
    console.print(
        f"targets: unchanged - list <= 0.30 s; first / floor <= 1.30; temp peak <= "
        f"{result['blend_bytes']:,} B (the .blend). Load average "
        f"{result['loadavg_before'][0]:.2f} before, {result['loadavg_after'][0]:.2f} after, "
        f"{result['cpus']} CPUs."
    )
    for row in result["rows"]:
        console.print(
            f"{row['code']}: CPU (user + system) of jobs list {row['jobs_list_cpu_s']:.2f} s, "
            f"unchanged submit {row['unchanged_cpu_s']:.2f} s "
            f"({row['unchanged_cpu_s'] - row['jobs_list_cpu_s']:+.2f} s), first submit "
            f"{row['first_cpu_s']:.2f} s (medians)"
        )
        console.print(
            f"[dim]{row['code']}: machine busy {row['busy_cores_median']:.2f} cores (median; all "
            f"processes, this CLI too) during the pairs; unchanged: {row['unchanged_said']}[/dim]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a git ref whose CLI to measure side by side")
    parser.add_argument("--texture-mib", type=float, default=64)
    parser.add_argument("--textures", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="flamenco-bench-submit-") as work:
            result = run(args, Path(work))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
