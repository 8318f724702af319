"""What a user waits for to submit a studio's job: `flamenco submit SCENE --frames 1-N
--chunk 1` end to end (the scene traced and hashed, what the Server lacks uploaded, the POST
that creates N tasks), against the code before a change.

    .venv/bin/python bench/submit_big.py [--frames 100000] [--before REF] [--repeat 3]
        [--json PATH]

Each variant (this tree; with --before, REF checked out in a `git worktree` and run through
PYTHONPATH, CLI and Server alike) has Servers of its own (tests/farmkit.py: real processes,
loopback, SQLite). Rounds alternate between the variants, so that both see about the same
load. Each round of a variant is a process of that code with a fresh Server, which takes two
submissions of the small test scene; the second counts (the first also uploads the scene).
Per variant, medians over --repeat rounds: the command's wall seconds and CPU seconds (user +
system of the CLI process), and the Server's CPU seconds meanwhile (psutil): the POST's cost.

Target (issue 15 §5): a job of 100,000 frames submitted in <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from simfarm import BASIC_BLEND, BenchFarm, machine  # noqa: E402  (+ tests/ on sys.path)
from submit import children_cpu_s, worktree  # noqa: E402

TARGET_S = 3.0


def server_cpu_s(farm: BenchFarm) -> float:
    times = psutil.Process(farm.procs[0].pid).cpu_times()
    return times.user + times.system


def submit_once(farm: BenchFarm, env: dict[str, str], frames: int) -> dict[str, float]:
    cpu, server = children_cpu_s(), server_cpu_s(farm)
    started = time.perf_counter()
    done = farm.cli("submit", str(BASIC_BLEND), "--frames", f"1-{frames}", "--chunk", "1", env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"flamenco submit failed:\n{done.stderr}")
    return {
        "s": seconds,
        "cli_cpu_s": children_cpu_s() - cpu,
        "server_cpu_s": server_cpu_s(farm) - server,
    }


def one_server(frames: int, work: Path) -> list[dict[str, float]]:
    """A Server of this process's code, two submissions to it: the first uploads the scene."""
    with BenchFarm(work) as farm:
        farm.start_server()
        return [submit_once(farm, {}, frames) for _ in range(2)]


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Rounds of one child process per variant, each with a Server of its own: a farm's
    accounts are made by the code that runs it, so each variant runs in its own process."""
    load_before = os.getloadavg()
    with ExitStack() as stack:
        variants: list[tuple[str, dict[str, str]]] = []
        if args.before:
            tree = stack.enter_context(worktree(args.before, work / "before-tree"))
            variants.append((args.before, {"PYTHONPATH": str(tree / "src")}))
        variants.append(("this tree", {}))
        runs: dict[str, list[dict[str, float]]] = {code: [] for code, _ in variants}
        for round_ in range(args.repeat):
            for number, (code, env) in enumerate(variants):
                out = work / f"round-{round_}-{number}.json"
                subprocess.run(
                    [sys.executable, __file__, "--frames", str(args.frames), "--one", str(out)],
                    env={**os.environ, **env},
                    check=True,
                )
                first, again = json.loads(out.read_text())
                runs[code].append(again)
                print(f"round {round_ + 1}, {code}: {first} then {again}", flush=True)
    rows = {
        code: {
            key: round(statistics.median(r[key] for r in results), 2)
            for key in ("s", "cli_cpu_s", "server_cpu_s")
        }
        | {"runs": results}
        for code, results in runs.items()
    }
    return {
        "frames": args.frames,
        "rows": rows,
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--before", help="a git ref to measure side by side")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a variant's child
    args = parser.parse_args()
    if args.frames <= 0 or args.repeat <= 0:
        parser.error("--frames and --repeat must be more than 0.")
    if args.one:
        with tempfile.TemporaryDirectory(prefix="flamenco-bench-submit-big-") as work:
            args.one.write_text(json.dumps(one_server(args.frames, Path(work) / "farm")))
        return
    with tempfile.TemporaryDirectory(prefix="flamenco-bench-submit-big-") as work:
        result = run(args, Path(work))
    for code, row in result["rows"].items():
        print(
            f"{code}: submit of {args.frames} frames {row['s']:.2f} s (CLI CPU "
            f"{row['cli_cpu_s']:.2f} s, Server CPU {row['server_cpu_s']:.2f} s), medians; "
            f"target <= {TARGET_S} s: {'met' if row['s'] <= TARGET_S else 'not met'}"
        )
    print(
        f"load average {result['loadavg_before'][0]:.2f} before, "
        f"{result['loadavg_after'][0]:.2f} after"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
