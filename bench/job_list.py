"""What a user waits for to list the jobs of a farm that has kept months of them: `flamenco
jobs list` from start to exit, the Server's answer to `GET /api/v1/jobs` (what the Dashboard's
jobs page relays), and with --dashboard the jobs page in Chromium (a reload until its rows are
drawn, and two redraws as a live refresh does them), against the code before a change.

    .venv/bin/python bench/job_list.py [--jobs 5000] [--queued 50] [--before REF]
        [--rounds 2] [--repeat 3] [--dashboard] [--json PATH]

One farm folder is made by this tree's code (tests/farmkit.py's accounts; SQLite): --jobs jobs
of one 4-frame task each, all completed but the last --queued, which wait for a Worker.
Each variant (this tree; with --before, REF checked out in a `git worktree` and run through
PYTHONPATH, CLI and Server alike) runs a Server of its own code on that folder, in turns, and
times --repeat listings of each kind; medians. The schema must be the same for both (no
migration between REF and this tree).
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

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from simfarm import BASIC_BLEND, BenchFarm, machine  # noqa: E402  (+ tests/ on sys.path)
from submit import worktree  # noqa: E402

from flamenco import wire  # noqa: E402
from flamenco.cli.up import bootstrap  # noqa: E402
from flamenco.config import ServerSettings  # noqa: E402
from flamenco.core.states import TaskStatus  # noqa: E402
from flamenco.server.services import build_services  # noqa: E402


def make_farm(root: Path, jobs: int, queued: int) -> None:
    """The farm folder: its accounts, then the jobs, completed through a Manager's reports
    as a real site's would be."""
    bootstrap(root)
    svc = build_services(ServerSettings(data_dir=root / "server"))
    try:
        sha = svc.blobs.put_file(BASIC_BLEND)
        manager = svc.auth.manager_for_token(svc.auth.create_manager("history"))
        worker = wire.WorkerSummary(name="w1", status="awake", blender_version="5.0.1")
        started = time.perf_counter()
        for number in range(jobs):
            sub = wire.JobSubmission(
                name=f"shot {number:05d}",
                files={"s.blend": sha},
                settings={"blend": "s.blend", "frames": "1-4", "chunk_size": 4},
            )
            svc.jobs.submit(sub, submitter="admin")
            if number < jobs - queued:
                sync = wire.ManagerSync(want=1, workers=[worker])
                (lease,) = svc.leases.sync(manager, sync).leases
                done = wire.TaskUpdate(
                    update_id=wire.new_update_id(),
                    task_id=lease.task_id,
                    worker="w1",
                    status=TaskStatus.COMPLETED,
                )
                svc.leases.apply_updates(manager, [done])
            if number % 1000 == 999:
                print(f"{number + 1} jobs made ({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        svc.close()


CHROMIUM = "/usr/bin/chromium"  # Debian's, as the Dashboard tests use (scripts/test installs it)
# Two redraws of the jobs list, as typing into its search and clearing it makes them.
REDRAWS_JS = """() => {
  const search = document.getElementById("search");
  const started = performance.now();
  for (const text of ["shot 0", ""]) {
    search.value = text;
    search.dispatchEvent(new Event("input"));
  }
  return performance.now() - started;
}"""


def time_dashboard(farm: BenchFarm, repeat: int, times: dict[str, list[float]]) -> None:
    """The jobs page in Chromium: reloads until every row it draws is there, and redraws."""
    from playwright.sync_api import sync_playwright

    url, _ = farm.start_dashboard()
    password = farm.secrets.admin_password  # type: ignore[union-attr]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(base_url=url)
            page.goto("/")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_selector("#jobs-body tr")
            for _ in range(repeat):
                started = time.perf_counter()
                page.reload()
                # Drawn: the rows stop growing (500 at most with Show more, all before it).
                page.wait_for_function(
                    "() => document.querySelectorAll('#jobs-body tr').length"
                    " >= Math.min(500, JSON.parse("
                    "document.getElementById('initial-data').textContent).jobs.length)",
                    timeout=300_000,
                )
                times.setdefault("page_s", []).append(time.perf_counter() - started)
                times.setdefault("redraws_ms", []).append(page.evaluate(REDRAWS_JS))
        finally:
            browser.close()


def one_variant(root: Path, repeat: int, dashboard: bool) -> dict[str, list[float]]:
    """A Server of this process's code on the farm folder; the listings timed."""
    times: dict[str, list[float]] = {"cli_s": [], "api_s": []}
    with BenchFarm(root) as farm:
        farm.start_server(data_dir=root / "server")
        if dashboard:
            time_dashboard(farm, repeat, times)
        headers = {"Authorization": f"Bearer {farm.token}"}
        for _ in range(repeat):
            started = time.perf_counter()
            listed = farm.cli("jobs", "list")
            times["cli_s"].append(time.perf_counter() - started)
            if listed.returncode != 0:
                raise RuntimeError(f"flamenco jobs list failed:\n{listed.stderr}")
            started = time.perf_counter()
            answer = httpx.get(f"{farm.server_url}/api/v1/jobs", headers=headers, timeout=120)
            times["api_s"].append(time.perf_counter() - started)
            answer.raise_for_status()
            times.setdefault("jobs", []).append(len(answer.json()))
    return times


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    root = work / "farm"
    make_farm(root, args.jobs, args.queued)
    load_before = os.getloadavg()
    with ExitStack() as stack:
        variants: list[tuple[str, dict[str, str]]] = [("this tree", {})]
        if args.before:
            tree = stack.enter_context(worktree(args.before, work / "before-tree"))
            variants.insert(0, (args.before, {"PYTHONPATH": str(tree / "src")}))
        runs: dict[str, dict[str, list[float]]] = {}
        for round_ in range(args.rounds):
            for number, (code, env) in enumerate(variants):
                out = work / f"round-{round_}-{number}.json"
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        str(out),
                        "--farm",
                        str(root),
                        "--repeat",
                        str(args.repeat),
                        *(["--dashboard"] if args.dashboard else []),
                    ],
                    env={**os.environ, **env},
                    check=True,
                )
                for key, values in json.loads(out.read_text()).items():
                    runs.setdefault(code, {}).setdefault(key, []).extend(values)
                print(f"round {round_ + 1}, {code}: {out.read_text()}", flush=True)
    rows = {
        code: {key: round(statistics.median(values), 3) for key, values in times.items()}
        | {"runs": times}
        for code, times in runs.items()
    }
    return {
        "jobs": args.jobs,
        "queued": args.queued,
        "rows": rows,
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--queued", type=int, default=50)
    parser.add_argument("--before", help="a git ref to measure side by side")
    parser.add_argument("--rounds", type=int, default=2, help="turns of the variants")
    parser.add_argument("--repeat", type=int, default=3, help="listings of each kind a turn")
    parser.add_argument("--dashboard", action="store_true", help="also the jobs page (Chromium)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a variant's child
    parser.add_argument("--farm", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs <= 0 or not 0 <= args.queued <= args.jobs or args.repeat <= 0:
        parser.error("--jobs and --repeat must be more than 0, --queued from 0 to --jobs.")
    if args.one:
        args.one.write_text(json.dumps(one_variant(args.farm, args.repeat, args.dashboard)))
        return
    with tempfile.TemporaryDirectory(prefix="flamenco-bench-job-list-") as work:
        result = run(args, Path(work))
    for code, row in result["rows"].items():
        page = (
            f", jobs page {row['page_s']:.2f} s, two redraws {row['redraws_ms']:.0f} ms"
            if "page_s" in row
            else ""
        )
        print(
            f"{code}: {args.jobs} jobs listed: `flamenco jobs list` {row['cli_s']:.2f} s, "
            f"GET /api/v1/jobs {row['api_s']:.2f} s{page} (medians)"
        )
    print(
        f"load average {result['loadavg_before'][0]:.2f} before, "
        f"{result['loadavg_after'][0]:.2f} after"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
