"""How much does the farm cost over plain Blender? Renders the same N frames three ways.

    .venv/bin/python bench/farm_overhead.py [--small-frames 24] [--heavy-frames 12]
        [--scenes small,heavy] [--modes a,b,c] [--before REF] [--repeat 1] [--trace]
        [--json PATH] [--keep DIR]

(a) limit: ONE Blender process (a WarmBlender) loads the file once and renders all N frames;
    timed from process start to the last frame written.
(b) farm, warm: Server + Manager + one `flamenco worker` as real processes, chunk 1; timed
    from the start of the submission to the job's completion on the Server (when the Server
    has recorded the job COMPLETED; its frames arrive before the completion by design).
(c) farm, cold: the same, but the Worker is bench/cold_worker.py, which starts a new Blender
    for every task and stops it after the task, like farms that run `blender -b file -f N`.
(p) farm, warm, without Cycles persistent data: (b) with the job submitted as
    `--no-persistent-data`, so each frame builds its BVH and images again; (b) against (p)
    (`--modes b,p`) is what persistent data saves.
(w) what the user waits for: the farm of (b), but the job is submitted by the command
    `flamenco submit --wait` in its own process, timed from the command's start to its exit
    (Python start-up, hashing, upload, rendering, and seeing the end all count).
(o) (w) with the code of `--before REF` (git archive of REF's src/flamenco) for the whole
    farm and the command: the same measurement of the code before a change, in the same run.

Scenes are built with flamenco.demo.scene.build_demo_scene into a temporary folder: "small"
(160x90, 6 samples: about 0.05 s a frame on a 2-core VM) and "heavy" (heavy=True: about 1 s a
frame). The job's end time is the Server's own `updated` stamp of the job (same clock), so
the polling interval of this script does not add to (b) and (c).

--trace runs the Manager and Worker through bench/probes.py (same code, timestamped steps)
and prints where the farm's time goes between frames.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import fcntl
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
SNAPSHOT_ENV = "FLAMENCO_BENCH_SNAPSHOT"


def _run_from_snapshot() -> None:
    """Re-run this script on a private copy of src/flamenco and tests/farmkit.py.

    The runs take minutes; every process of them (this one, Server, Manager, Worker, Blender
    children) must use the same code even if the working tree changes meanwhile. The copy is
    put first on PYTHONPATH, which every child process inherits.
    """
    if os.environ.get(SNAPSHOT_ENV) or "--no-snapshot" in sys.argv:
        return
    code = Path(tempfile.mkdtemp(prefix="farm-overhead-code-"))
    shutil.copytree(
        REPO / "src" / "flamenco", code / "flamenco", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(REPO / "tests" / "farmkit.py", code / "farmkit.py")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    env[SNAPSHOT_ENV] = str(code)
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]], env)


_run_from_snapshot()
if os.environ.get(SNAPSHOT_ENV):
    atexit.register(shutil.rmtree, os.environ[SNAPSHOT_ENV], ignore_errors=True)
    sys.path.insert(0, os.environ[SNAPSHOT_ENV])
else:
    sys.path.insert(0, str(REPO / "tests"))

from code_at import code_at  # noqa: E402  (bench/ is not a package)

from farmkit import FINAL, Proc, TestFarm, wait_until  # noqa: E402
from flamenco import wire  # noqa: E402
from flamenco.cli.submit import SubmitRequest, submit_scene  # noqa: E402
from flamenco.core.states import JobStatus  # noqa: E402
from flamenco.demo.scene import build_demo_scene  # noqa: E402
from flamenco.worker.blender import BlenderInstall, find_blender  # noqa: E402
from flamenco.worker.warm_blender import WarmBlender  # noqa: E402

COLD_WORKER = BENCH / "cold_worker.py"
PROBES = BENCH / "probes.py"
TRACE_ENV = "FLAMENCO_BENCH_TRACE"
# Wait after the Worker's first sync before submitting, so that start-up work is over. The
# Manager polls the Server for new tasks on its own clock (every 1 s, or 0.25 s while
# Workers wait for work), so the wait for the first lease depends on the phase: --trace
# reports it.
SETTLE_S = 2.5
# Job status polls, as often as `flamenco submit --wait`; the end time is the Server's own
# stamp of the job, so the poll interval adds nothing to (b) and (c).
POLL_S = 1.0
LOCK_FILE = Path(tempfile.gettempdir()) / "flamenco-bench-machine.lock"
TARGETS = {"small": 1.5, "heavy": 1.10}  # b/a, from the issue

console = Console(width=None if sys.stdout.isatty() else 160)  # logs keep whole rows


@dataclass(frozen=True)
class Scene:
    name: str
    frames: int
    resolution: tuple[int, int]
    samples: int
    heavy: bool

    def describe(self) -> str:
        if self.heavy:
            return "heavy=True: 480x270, 15 samples"
        return f"{self.resolution[0]}x{self.resolution[1]}, {self.samples} samples"


# ---- CPU accounting from /proc -------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[float, float] | None:
    """(own CPU s, CPU s of reaped children) of a process, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def busy_s() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields)
    return (user + nice + system + irq + softirq + steal) / TICK


def wait_for_quiet(limit_cores: float, timeout: float, window: float = 3.0) -> float:
    """Wait until the machine's CPU use over `window` s is below `limit_cores`; return it.

    The machine may be shared: another user's render on a 2-core box doubles every time.
    Returns the last load seen if `timeout` passes first.
    """
    start = time.monotonic()
    while True:
        b0, o0 = busy_s(), own_s()
        time.sleep(window)
        load = (busy_s() - b0 - (own_s() - o0)) / window
        waited = time.monotonic() - start
        if load < limit_cores or waited > timeout:
            if waited > window * 1.5:
                console.print(f"[dim](waited {waited:.0f} s for a quiet machine)[/dim]", end=" ")
            return load


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """One measurement at a time among the benchmarks on this machine that take this lock."""
    with open(LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def own_s() -> float:
    t = os.times()
    return t.user + t.system


def cpu_tree(pid: int) -> dict[str, float]:
    """CPU seconds of a process ('self') and of all its descendants, live or reaped."""
    own = _stat(pid)
    if own is None:
        return {"self": 0.0, "children": 0.0}
    children = own[1]
    stack = _children(pid)
    while stack:
        kid = stack.pop()
        st = _stat(kid)
        if st is not None:
            children += st[0] + st[1]
            stack += _children(kid)
    return {"self": own[0], "children": children}


# ---- (a) the limit -------------------------------------------------------------------------


async def _limit(install: BlenderInstall, blend: Path, n: int, work: Path) -> dict[str, Any]:
    seconds: list[float] = []

    async def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "frame":
            seconds.append(float(event["seconds"]))

    busy0, own0 = busy_s(), own_s()
    t0 = time.perf_counter()
    blender = WarmBlender(install, blend, user_resources=work / "blender-user")
    await blender.start()
    t_ready = time.perf_counter()
    paths = await blender.render(list(range(1, n + 1)), work / "out", on_event=on_event)
    t_end = time.perf_counter()
    cpu = cpu_tree(blender.pid or 0)["self"]
    other = busy_s() - busy0 - cpu - (own_s() - own0)
    await blender.terminate()
    if len(paths) != n or not all(p.is_file() for p in paths):
        raise RuntimeError(f"limit run wrote {len(paths)} of {n} frames")
    return {
        "wall_s": t_end - t0,
        "start_s": t_ready - t0,
        "render_s": t_end - t_ready,
        "frame_s_sum": sum(seconds),
        "frame_s_median": statistics.median(seconds),
        "cpu_s": cpu,
        "other_cpu_s": other,
    }


def run_limit(install: BlenderInstall, blend: Path, n: int, work: Path) -> dict[str, Any]:
    return asyncio.run(_limit(install, blend, n, work))


# ---- (b), (c) the farm ---------------------------------------------------------------------


class ScriptProc(Proc):
    """Like farmkit.Proc, but runs a script of bench/ instead of `python -m flamenco`."""

    def __init__(
        self, label: str, script: Path, args: list[str], env: dict[str, str], log: Path
    ) -> None:
        self.label, self.log, self.args, self.env = label, log, args, env
        self.prefix: list[str] = []
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                [sys.executable, str(script), *args],
                env={**os.environ, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


BOOTSTRAP = (
    "import sys, pathlib; from flamenco.cli.up import bootstrap; "
    "bootstrap(pathlib.Path(sys.argv[1]))"
)


class BenchFarm(TestFarm):
    """A TestFarm whose Worker may be the cold one and whose parts may carry probes."""

    __test__ = False

    def __init__(
        self, root: Path, cold: bool, trace: Path | None, code: Path | None = None
    ) -> None:
        super().__init__(root)
        self.cold, self.trace, self.code = cold, trace, code

    def start_server(self, *args: Any, **kwargs: Any) -> str:
        if self.code is not None:  # the farm's database made by the code that will serve it
            subprocess.run(
                [sys.executable, "-c", BOOTSTRAP, str(self.root)],
                env={**os.environ, "PYTHONPATH": str(self.code)},
                check=True,
            )
        return super().start_server(*args, **kwargs)  # reads the farm.toml written above

    def _start(self, label: str, args: list[str], env: dict[str, str], *more: Any) -> Proc:
        if self.code is not None:  # every part of the farm runs this copy of the code
            env = {**env, "PYTHONPATH": str(self.code)}
        component = args[0]
        cold = self.cold and component == "worker"
        traced = self.trace is not None and component in ("manager", "worker")
        if not (cold or traced):
            return super()._start(label, args, env, *more)
        full_env = {"XDG_CONFIG_HOME": str(self.config_home), **env}
        if traced:
            full_env[TRACE_ENV] = str(self.trace)
        script, argv = (COLD_WORKER, args[1:]) if cold else (PROBES, args)
        proc = ScriptProc(label, script, argv, full_env, self.root / "logs" / f"{label}.log")
        self.procs.append(proc)
        return proc


def _worker_awake(farm: TestFarm, worker: Proc) -> bool:
    if not worker.alive():
        raise RuntimeError(f"the Worker exited:\n{worker.output()[-3000:]}")
    assert farm.secrets is not None
    try:
        reply = httpx.get(
            f"{farm.manager_url}/api/v1/status",
            headers={"Authorization": f"Bearer {farm.secrets.manager_token}"},
            timeout=5,
        )
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and any(w["status"] == "awake" for w in reply.json()["workers"])


def submit_and_wait_cli(
    farm: TestFarm, blend: Path, n: int, code: Path | None, deadline_s: float
) -> tuple[str, float]:
    """Run `flamenco submit --wait` as a user does; the job's id and the command's exit time."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(farm.config_home),
        "FLAMENCO_SERVER": farm.server_url,
        "FLAMENCO_TOKEN": farm.token,
        **({"PYTHONPATH": str(code)} if code is not None else {}),
    }
    command = ["submit", str(blend), "--frames", f"1-{n}", "--chunk", "1", "--wait", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "flamenco", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=deadline_s,
        check=False,
    )
    t_exit = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"submit --wait exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)["id"], t_exit


def run_farm(
    blend: Path,
    n: int,
    root: Path,
    cold: bool,
    trace: Path | None,
    persistent_data: bool = True,
    wait_cli: bool = False,
    code: Path | None = None,
) -> dict[str, Any]:
    """(b), (c), (p); with `wait_cli`, (w) and (o): timed to the exit of `submit --wait`."""
    with BenchFarm(root, cold=cold, trace=trace, code=code) as farm:
        farm.start_server()
        farm.start_manager()
        worker = farm.start_worker("w1")
        wait_until(lambda: _worker_awake(farm, worker), 120, "the Worker's first sync")
        time.sleep(SETTLE_S)
        api = farm.api()
        # farm.procs in start order: Server, Manager, Worker.
        procs = dict(zip(("server", "manager", "worker"), (p.pid for p in farm.procs), strict=True))
        cpu0 = {label: cpu_tree(pid) for label, pid in procs.items()}
        busy0, own0 = busy_s(), own_s()

        t0 = time.time()
        t_exit = None
        if wait_cli:
            job_id, t_exit = submit_and_wait_cli(farm, blend, n, code, 60 + 10 * n)
            job = api.call("GET", f"/api/v1/jobs/{job_id}", wire.Job)
        else:
            settings = {} if persistent_data else {"persistent_data": False}
            request = SubmitRequest(blend, f"1-{n}", chunk=1, name=blend.stem, settings=settings)
            job = submit_scene(api, request)
        t_submitted = time.time()
        deadline = time.monotonic() + 60 + 10 * n
        while (job := api.call("GET", f"/api/v1/jobs/{job.id}", wire.Job)).status not in FINAL:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job.id} did not finish:\n{farm.logs()}")
            time.sleep(POLL_S)
        t_seen = time.time()
        cpu1 = {label: cpu_tree(pid) for label, pid in procs.items()}
        busy1, own1 = busy_s(), own_s()
        if job.status != JobStatus.COMPLETED:
            raise RuntimeError(f"job {job.id} ended {job.status}:\n{farm.logs()}")
        frames = api.call("GET", f"/api/v1/jobs/{job.id}/frames", wire.FrameList).root
        if sorted(f.frame for f in frames) != list(range(1, n + 1)):
            raise RuntimeError(f"the Server has frames {[f.frame for f in frames]}, not 1-{n}")
        t_end = job.updated.timestamp()
        waited = {}
        if t_exit is not None:
            # The user's wait ends when the command exits; how long after the Server's stamp.
            waited = {"exit_lag_s": t_exit - t_end}
            t_end = t_exit
        cpu = {
            label: {k: round(cpu1[label][k] - cpu0[label][k], 3) for k in ("self", "children")}
            for label in procs
        }
        return {
            "wall_s": t_end - t0,
            "submit_s": t_submitted - t0,
            "t0": t0,
            "t_end": t_end,
            "poll_lag_s": t_seen - t_end,
            "cpu_s": cpu,
            # Busy CPU time of the machine not used by this farm or this script: other
            # people's work on a shared machine; large values make the run suspect.
            "other_cpu_s": busy1
            - busy0
            - (own1 - own0)
            - sum(v["self"] + v["children"] for v in cpu.values()),
            "job": job.id,
            **waited,
        }


# ---- trace analysis ------------------------------------------------------------------------


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else 0.0


def analyse_trace(path: Path, t0: float, t_end: float, submit_s: float) -> dict[str, Any]:
    """Split the farm's wall time into head, rendering, gaps between renders, and tail.

    head + render + gaps + tail == wall time of the farm run, exactly.
    """
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    events = [e for e in events if (e["t1"] or e["t0"]) >= t0 and e["t0"] <= t_end]
    w = [e for e in events if e["c"] == "worker"]
    m = [e for e in events if e["c"] == "manager"]

    def of(items: list[dict[str, Any]], ev: str) -> list[dict[str, Any]]:
        return sorted((e for e in items if e["ev"] == ev), key=lambda e: e["t0"])

    renders, tasks, sync_once = of(w, "blender.render"), of(w, "task"), of(w, "sync_once")
    http_w, http_m = of(w, "http"), of(m, "http")
    syncs = [e for e in http_w if e["path"].endswith("/worker/sync")]
    # Requests per task: leave out the long poll that was already waiting at the submission.
    http_w, http_m = [e for e in http_w if e["t0"] >= t0], [e for e in http_m if e["t0"] >= t0]
    assigned = {e["assigned"]: e for e in syncs if e.get("assigned")}
    if not renders or not tasks:
        return {}

    parts: dict[str, list[float]] = {
        "render end -> task reported done": [],
        "task done -> Worker's next sync starts": [],
        "sync: deliver outbox to Manager first": [],
        "sync: POST /worker/sync (get next task)": [],
        "reply -> render command (files, Blender, report)": [],
    }
    delivered: dict[str, list[int]] = {"frame PUTs": [], "update POSTs": []}
    gaps: list[float] = []
    for i in range(len(tasks) - 1):
        task, nxt, rend, nrend = tasks[i], tasks[i + 1], renders[i], renders[i + 1]
        sync = assigned.get(nxt["task"])
        so = next((e for e in sync_once if sync and e["t0"] <= sync["t0"] <= e["t1"]), None)
        if sync is None or so is None:
            continue
        parts["render end -> task reported done"].append(task["t1"] - rend["t1"])
        parts["task done -> Worker's next sync starts"].append(so["t0"] - task["t1"])
        parts["sync: deliver outbox to Manager first"].append(sync["t0"] - so["t0"])
        parts["sync: POST /worker/sync (get next task)"].append(sync["t1"] - sync["t0"])
        parts["reply -> render command (files, Blender, report)"].append(nrend["t0"] - sync["t1"])
        inside = [e for e in http_w if so["t0"] <= e["t0"] < sync["t0"]]
        delivered["frame PUTs"].append(sum(1 for e in inside if e["method"] == "PUT"))
        delivered["update POSTs"].append(sum(1 for e in inside if e["path"].endswith("updates")))
        gaps.append(nrend["t0"] - rend["t1"])

    takes = [e for e in of(m, "mgr.take_leases") if e.get("n")]
    link = of(m, "mgr.link_sync")
    got = [e for e in of(m, "mgr.worker_sync") if e.get("want_task") and e.get("assigned")]
    render_s = sum(e["t1"] - e["t0"] for e in renders)
    all_gaps = sum(renders[i + 1]["t0"] - renders[i]["t1"] for i in range(len(renders) - 1))
    starts = of(w, "blender.start")
    first = assigned.get(tasks[0]["task"])
    return {
        "tasks": len(tasks),
        "budget_s": {
            "submit: pack, upload, create the job": submit_s,
            "job created -> first render command (Blender start)": renders[0]["t0"] - t0 - submit_s,
            "rendering (sum of render commands)": render_s,
            "gaps between render commands": all_gaps,
            "tail: last frame -> job completed on Server": t_end - renders[-1]["t1"],
        },
        "head_s": {
            "job created -> Manager has a lease": (takes[0]["t1"] - t0 - submit_s)
            if takes
            else None,
            "job created -> Worker has the task": (first["t1"] - t0 - submit_s) if first else None,
            "Blender start (import bpy + open .blend), mean": _mean(
                [e["t1"] - e["t0"] for e in starts]
            ),
            "Blender starts": len(starts),
        },
        "blender_frame_s_sum": sum(e.get("seconds") or 0.0 for e in of(w, "blender.frame")),
        "gap_s_mean": _mean(gaps),
        "gap_parts_s_mean": {k: _mean(v) for k, v in parts.items()},
        "delivered_before_sync_mean": {
            k: _mean([float(x) for x in v]) for k, v in delivered.items()
        },
        "manager": {
            "link syncs with the Server": len(link),
            "link syncs per task": len(link) / len(tasks),
            "link sync mean s (outbox flush + POST /manager/sync)": _mean(
                [e["t1"] - e["t0"] for e in link]
            ),
            "task requests that waited for a lease (>20 ms)": sum(
                1 for e in got if e["t1"] - e["t0"] > 0.02
            ),
        },
        "http": {
            "worker->manager per task": len(http_w) / len(tasks),
            "manager->server per task": len(http_m) / len(tasks),
            "by path (worker->manager)": _by_path(http_w),
            "by path (manager->server)": _by_path(http_m),
        },
    }


def _by_path(events: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, list[float]] = {}
    for e in events:
        key = (
            e["method"]
            + " "
            + "/".join("{id}" if len(p) >= 16 or p.isdigit() else p for p in e["path"].split("/"))
        )
        out.setdefault(key, []).append(e["t1"] - e["t0"])
    return {k: {"n": len(v), "mean_s": round(statistics.fmean(v), 4)} for k, v in out.items()}


# ---- the run -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), ""
        )
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def code_version() -> dict[str, Any]:
    """The commit and the changed files of src/ when the run started (read-only git)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    import flamenco

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_in_src": git("status", "--porcelain", "--", "src").splitlines(),
        "flamenco_from": str(Path(flamenco.__file__).parent),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small-frames", type=int, default=24, help="N for the small scene [24]")
    p.add_argument("--heavy-frames", type=int, default=12, help="N for the heavy scene [12]")
    p.add_argument("--scenes", default="small,heavy", help="which scenes [small,heavy]")
    p.add_argument("--modes", default="a,b,c", help="which of a, b, c, p, w, o to run [a,b,c]")
    p.add_argument(
        "--before",
        metavar="REF",
        help="git commit whose code mode (o) runs: the same wait, before a change",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs of each; medians shown [1]")
    p.add_argument("--trace", action="store_true", help="probe Manager+Worker; show gaps")
    p.add_argument("--json", type=Path, help="write all results to this JSON file")
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.15,
        help="before each run wait until other processes use less CPU than this [0.15]",
    )
    p.add_argument(
        "--quiet-timeout", type=float, default=900, help="longest wait for a quiet machine [900]"
    )
    p.add_argument(
        "--quiet-window", type=float, default=5.0, help="...measured over this many s [5]"
    )
    p.add_argument(
        "--disturbed-cores",
        type=float,
        default=0.1,
        help="a run is disturbed if other processes used more CPU than this on average [0.1]",
    )
    p.add_argument(
        "--retries", type=int, default=4, help="reruns of a run disturbed by other processes [4]"
    )
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, traces)")
    p.add_argument(
        "--no-snapshot",
        action="store_true",
        help="run the live src/ instead of a copy taken at the start",
    )
    return p.parse_args(argv)


def before_code(ref: str | None) -> Path:
    """A private copy of src/flamenco as it was at commit `ref` (for mode o)."""
    if not ref:
        raise SystemExit("mode o needs --before REF: the commit whose code it runs")
    return code_at(ref, "farm-overhead-before-")


def _stop_cleanly(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # runs the farms' __exit__ (stops their processes) and atexit


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Started in the background, a shell ignores SIGINT for us: make both signals stop cleanly.
    signal.signal(signal.SIGTERM, _stop_cleanly)
    signal.signal(signal.SIGINT, _stop_cleanly)
    scenes = {
        "small": Scene("small", args.small_frames, (160, 90), 6, False),
        "heavy": Scene("heavy", args.heavy_frames, (480, 270), 15, True),
    }
    chosen = [scenes[s.strip()] for s in args.scenes.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    before = before_code(args.before) if "o" in modes else None
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="farm-overhead-", dir=args.keep))
    else:
        tmp = tempfile.TemporaryDirectory(prefix="farm-overhead-")
        work = Path(tmp.name)
    install = find_blender(os.environ.get("FLAMENCO_WORKER_BLENDER") or None)
    console.print(f"Blender {install.version} ({install.kind}); working in {work}")
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "blender": {"version": install.version, "kind": install.kind},
        "code": code_version(),
        "settle_s": SETTLE_S,
        "quiet_cores": args.quiet_cores,
        "disturbed_cores": args.disturbed_cores,
        "before": args.before,
        "scenes": {},
    }
    for scene in chosen:
        blend = build_demo_scene(
            install,
            work / scene.name / f"{scene.name}.blend",
            frames=scene.frames,
            resolution=scene.resolution,
            samples=scene.samples,
            heavy=scene.heavy,
            user_resources=work / "build-user",
        )
        runs: list[dict[str, Any]] = []
        traced: dict[str, Any] = {}
        # With --trace, one extra run with probes comes first; it is not in the medians.
        plan = ([("traced", True)] if args.trace else []) + [
            (str(rep + 1), False) for rep in range(args.repeat)
        ]
        for tag, probed in plan:
            run: dict[str, Any] = {}
            for mode in modes:
                console.print(
                    f"[dim]{time.strftime('%H:%M:%S')}[/dim] {scene.name} {mode} run {tag} ...",
                    end=" ",
                )
                for attempt in range(args.retries + 1):
                    where = work / scene.name / f"{mode}-{tag}-{attempt}"
                    trace = where / "trace.jsonl" if probed and mode != "a" else None
                    with machine_lock():
                        load = wait_for_quiet(
                            args.quiet_cores, args.quiet_timeout, args.quiet_window
                        )
                        if mode == "a":
                            res = run_limit(install, blend, scene.frames, where)
                        else:
                            res = run_farm(
                                blend,
                                scene.frames,
                                where,
                                mode == "c",
                                trace,
                                mode != "p",
                                wait_cli=mode in ("w", "o"),
                                code=before if mode == "o" else None,
                            )
                        if trace is not None and trace.exists():
                            res["trace"] = analyse_trace(
                                trace, res["t0"], res["t_end"], res["submit_s"]
                            )
                    res["load_before"] = load
                    res["disturbed"] = res["other_cpu_s"] > args.disturbed_cores * res["wall_s"]
                    run[mode] = res
                    if not res["disturbed"]:
                        break
                    console.print(
                        f"disturbed ({res['other_cpu_s']:.1f} CPU s of other processes), again ...",
                        end=" ",
                    )
                console.print(f"{run[mode]['wall_s']:.2f} s")
            if probed:
                traced = run
            else:
                runs.append(run)
        summary = {m: statistics.median(r[m]["wall_s"] for r in runs) for m in modes}
        if "a" in summary:
            for m in ("b", "c", "w", "o"):
                if m in summary:
                    summary[f"{m}/a"] = summary[m] / summary["a"]
        if "b" in summary and "p" in summary:
            summary["b/p"] = summary["b"] / summary["p"]
        ratios = {
            f"{m}/a": [r[m]["wall_s"] / r["a"]["wall_s"] for r in runs]
            for m in ("b", "c", "w", "o")
            if m in modes and "a" in modes
        }
        result["scenes"][scene.name] = {
            "frames": scene.frames,
            "ratios_per_run": ratios,
            "traced_run": traced,
            "settings": scene.describe(),
            "target_b_over_a": TARGETS[scene.name],
            "median": summary,
            "runs": runs,
        }
    print_table(result)
    print_cpu(result)
    if args.trace:
        print_trace(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
        console.print(f"results written to {args.json}")
    return 0


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    table = Table(
        title=f"Farm overhead, {m['nproc']} vCPU {m['cpu']}, Blender {result['blender']['version']}"
    )
    for col in ("scene", "N", "s/frame", "(a) limit s", "(b) warm farm s", "(c) cold farm s"):
        table.add_column(col, justify="right")
    for col in ("b/a", "c/a", "target b/a"):
        table.add_column(col, justify="right")
    for name, sc in result["scenes"].items():
        med, runs = sc["median"], sc["runs"]
        per_frame = ""
        if "a" in runs[0]:
            per_frame = f"{statistics.median(r['a']['frame_s_median'] for r in runs):.3f}"

        def cell(key: str, med: dict[str, float] = med, runs: list = runs) -> str:
            if key not in med:
                return "-"
            star = "*" if any(r.get(key[0], {}).get("disturbed") for r in runs) else ""
            return f"{med[key]:.2f}{star}"

        ratio = med.get("b/a")
        ok = "" if ratio is None else (" ok" if ratio <= sc["target_b_over_a"] else " MISSED")
        table.add_row(
            f"{name} ({sc['settings']})",
            str(sc["frames"]),
            per_frame,
            cell("a"),
            cell("b"),
            cell("c"),
            cell("b/a"),
            cell("c/a"),
            f"<= {sc['target_b_over_a']:.2f}{ok}",
        )
    console.print(table)
    console.print(
        "Medians of the runs. * = a run disturbed by other processes on the machine "
        f"(> {result['disturbed_cores']} cores of CPU outside the benchmark)."
    )
    for name, sc in result["scenes"].items():
        med = sc["median"]
        for m, what in (("w", "this code"), ("o", f"the code of {result['before']}")):
            if m in med:
                lags = [r[m]["exit_lag_s"] for r in sc["runs"]]
                console.print(
                    f"{name}: ({m}) `submit --wait` with {what}: {med[m]:.2f} s from the "
                    f"command's start to its exit"
                    + (f", {m}/a = {med[m + '/a']:.3f}" if f"{m}/a" in med else "")
                    + f"; exit after the Server's end stamp: median {statistics.median(lags):.3f} s"
                    + f" (runs {', '.join(f'{x:.3f}' for x in lags)})"
                )
        if "b/p" in med:
            console.print(
                f"{name}: Cycles persistent data on (b) {med['b']:.2f} s, off (p) "
                f"{med['p']:.2f} s: b/p = {med['b/p']:.3f}"
            )


def print_trace(result: dict[str, Any]) -> None:
    """Where the time goes, from the extra run with probes of each scene."""
    for name, sc in result["scenes"].items():
        run = sc.get("traced_run") or {}
        traces = {m: run[m].get("trace") for m in ("b", "c") if m in run and run[m].get("trace")}
        if not traces:
            continue
        table = Table(title=f"{name}: wall-time budget of the traced run (s)")
        table.add_column("part")
        for col in ("(a) limit", *(f"({m}) farm" for m in traces)):
            table.add_column(col, justify="right")
        a = run.get("a", {})
        keys = list(next(iter(traces.values()))["budget_s"])
        a_parts = [0.0, a.get("start_s"), a.get("render_s"), 0.0, 0.0]
        for key, a_val in zip(keys, a_parts, strict=True):
            table.add_row(
                key,
                "-" if a_val is None else f"{a_val:.3f}",
                *(f"{t['budget_s'][key]:.3f}" for t in traces.values()),
            )
        table.add_row(
            "total",
            f"{a['wall_s']:.3f}" if a else "-",
            *(f"{run[m]['wall_s']:.3f}" for m in traces),
        )
        console.print(table)
        detail = Table(title=f"{name}: one gap between two tasks, mean (s)")
        detail.add_column("step")
        for m in traces:
            detail.add_column(f"({m})", justify="right")
        first = next(iter(traces.values()))
        for key in first["gap_parts_s_mean"]:
            detail.add_row(key, *(f"{t['gap_parts_s_mean'][key]:.4f}" for t in traces.values()))
        detail.add_row("gap total", *(f"{t['gap_s_mean']:.4f}" for t in traces.values()))
        console.print(detail)
        for m, t in traces.items():
            console.print(f"[bold]({m}) head[/bold]", t["head_s"])
            console.print(
                f"[bold]({m}) delivered before asking[/bold]", t["delivered_before_sync_mean"]
            )
            console.print(f"[bold]({m}) manager[/bold]", t["manager"])
            console.print(f"[bold]({m}) http[/bold]", t["http"])


def print_cpu(result: dict[str, Any]) -> None:
    table = Table(
        title="CPU seconds used during the job (median over runs; other = the largest CPU "
        "time of processes outside the benchmark in any run)"
    )
    cols = ("scene", "mode", "wall s", "Server", "Manager", "Worker", "Blender", "total", "other")
    for col in cols:
        table.add_column(col, justify="right")
    for name, sc in result["scenes"].items():
        for m in ("a", "b", "c", "p", "w", "o"):
            runs = [r[m] for r in sc["runs"] if m in r]
            if not runs:
                continue
            if m == "a":
                row = ["-", "-", "-", statistics.median(r["cpu_s"] for r in runs)]
            else:
                row = [
                    statistics.median(r["cpu_s"]["server"]["self"] for r in runs),
                    statistics.median(r["cpu_s"]["manager"]["self"] for r in runs),
                    statistics.median(r["cpu_s"]["worker"]["self"] for r in runs),
                    statistics.median(r["cpu_s"]["worker"]["children"] for r in runs),
                ]
            total = sum(x for x in row if isinstance(x, float))
            table.add_row(
                name,
                m,
                f"{statistics.median(r['wall_s'] for r in runs):.2f}",
                *(x if isinstance(x, str) else f"{x:.2f}" for x in row),
                f"{total:.2f}",
                f"{max(r.get('other_cpu_s', 0.0) for r in runs):.2f}",
            )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
