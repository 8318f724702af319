"""Shared helpers of bench/dispatch.py and bench/transfer.py: simulated Workers (aiohttp), a
TestFarm whose Server and Manager may carry aggregate probes, CPU accounting, py-spy.

Also a launcher: `python bench/simfarm.py probe COMPONENT STATS.json ARGS...` runs exactly
`flamenco ARGS...` with a few methods of that component wrapped so that their call count,
total and maximum duration are kept in memory and written to STATS.json twice a second
(cumulative counters: read them at the start and at the end of a window and subtract).
Each probe costs a few microseconds per call; nothing else changes. For plain (sync)
functions the probes also keep the CPU time of the calling thread (time.thread_time), which
other processes on the machine do not inflate; for coroutines only wall time is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import inspect
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "tests"))

from farmkit import Proc, TestFarm  # noqa: E402

BASIC_BLEND = Path("/work/shared/blend-corpus/basic_file.blend")


# ---- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    head, dirty = "", []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(REPO)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--short", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split("\n")
    import flamenco

    package = Path(flamenco.__file__).parent  # PYTHONPATH may point at another checkout
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "flamenco_package": str(package),
        "src_digest": digest.hexdigest()[:12],
        "git_head": head,
        "src_uncommitted": [line.strip() for line in dirty if line.strip()],
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def busy_cores_between(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Cores busy machine-wide (all processes) between two cpu_ticks() samples."""
    return (b[0] - a[0]) / max(1, b[1] - a[1]) * (os.cpu_count() or 1)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# ---- a farm whose parts may carry probes --------------------------------------------------


class ScriptProc(Proc):
    """Like farmkit.Proc, but runs `python bench/simfarm.py probe ...` instead."""

    def __init__(self, label: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.label, self.log, self.args, self.env, self.prefix = label, log, args, env, []
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "probe", *args],
                env={**os.environ, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


class BenchFarm(TestFarm):
    """A TestFarm; with `probes`, its Server and Manager write aggregate probe stats."""

    __test__ = False

    def __init__(self, root: Path, probes: bool = False) -> None:
        super().__init__(root)
        self.probes = probes

    def stats_path(self, component: str) -> Path:
        return self.root / f"probe-{component}.json"

    def _start(
        self, label: str, args: list[str], env: dict[str, str], prefix: list[str] | None = None
    ) -> Proc:
        component = args[0]
        if not self.probes or component not in ("server", "manager"):
            return super()._start(label, args, env, prefix)
        full_env = {"XDG_CONFIG_HOME": str(self.config_home), **env}
        stats = str(self.stats_path(component))
        proc = ScriptProc(
            label, [component, stats, *args], full_env, self.root / "logs" / f"{label}.log"
        )
        self.procs.append(proc)
        return proc

    def read_stats(self, component: str) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(self.stats_path(component).read_text())
        return {}


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Counters of the window: after - before (max is the max seen up to `after`)."""
    out: dict[str, Any] = {"calls": {}, "sums": {}}
    for label, (n, total, mx, cpu) in after.get("calls", {}).items():
        n0, total0, _, cpu0 = before.get("calls", {}).get(label, (0, 0.0, 0.0, 0.0))
        if n - n0:
            out["calls"][label] = (n - n0, total - total0, mx, cpu - cpu0)
    for key, value in after.get("sums", {}).items():
        out["sums"][key] = value - before.get("sums", {}).get(key, 0)
    out["lag"] = _since(before.get("lag", []), after.get("lag", []))
    out["dists"] = {
        label: _since(before.get("dists", {}).get(label, []), values)
        for label, values in after.get("dists", {}).items()
    }
    return out


def _since(before: list[float], after: list[float]) -> list[float]:
    """What a probe list gained between two reads (all of it, if it was trimmed meanwhile)."""
    return after[len(before) :] if len(after) >= len(before) else after


# ---- the probes, inside the Server or Manager process -----------------------------------------

_calls: dict[str, list[float]] = {}
_sums: Counter[str] = Counter()
_lag: list[float] = []
_dists: dict[str, list[float]] = {}  # label -> each call's wall seconds (DIST_LABELS only)
# Re-entrant: a garbage collection can start inside a probe's own bookkeeping (any allocation
# there), and the collection's callback (_gc_probe) notes its time under the same lock. With a
# plain Lock that thread waited for itself: the Manager under test stopped dead mid-run.
_lock = threading.RLock()
# Wrapped calls whose every duration is kept, for percentiles: where a sync's time goes.
DIST_LABELS = {
    "mgr.wait_for_assignment",
    "mgr.saved",
    "mgr.worker_sync (wall, incl. long-poll wait)",
}


def _note(label: str, seconds: float, cpu: float = 0.0) -> None:
    """One call: wall seconds, and CPU seconds of the calling thread (sync functions only)."""
    with _lock:
        entry = _calls.get(label)
        if entry is None:
            _calls[label] = [1, seconds, seconds, cpu]
        else:
            entry[0] += 1
            entry[1] += seconds
            entry[3] += cpu
            if seconds > entry[2]:
                entry[2] = seconds
        if label in DIST_LABELS:
            values = _dists.setdefault(label, [])
            values.append(round(seconds, 5))
            if len(values) > 200_000:
                del values[:100_000]


def _add(key: str, n: float = 1) -> None:
    with _lock:
        _sums[key] += n


def _wrap(owner: object, name: str, label: str, after: Callable[..., None] | None = None) -> None:
    raw = inspect.getattr_static(owner, name)
    is_static = isinstance(raw, staticmethod)
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def probe(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            result = await original(*args, **kwargs)
            _note(label, time.perf_counter() - t0)
            if after is not None:
                with contextlib.suppress(Exception):
                    after(result, *args, **kwargs)
            return result

    else:

        @functools.wraps(original)
        def probe(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            result = original(*args, **kwargs)
            _note(label, time.perf_counter() - t0, time.thread_time() - c0)
            if after is not None:
                with contextlib.suppress(Exception):
                    after(result, *args, **kwargs)
            return result

    setattr(owner, name, staticmethod(probe) if is_static else probe)


def _dump_forever(path: Path) -> None:
    while True:
        time.sleep(0.5)
        with _lock:
            data = {
                "calls": {k: list(v) for k, v in _calls.items()},
                "sums": dict(_sums),
                "lag": list(_lag),
                "dists": {k: list(v) for k, v in _dists.items()},
            }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


async def _lag_monitor(every: float = 0.01) -> None:
    """How late the event loop wakes a 10 ms sleep: the Manager's loop saturation."""
    loop = asyncio.get_running_loop()
    while True:
        t0 = loop.time()
        await asyncio.sleep(every)
        late = loop.time() - t0 - every
        with _lock:
            _lag.append(round(late, 5))
            if len(_lag) > 200_000:
                del _lag[:100_000]


def _gc_probe() -> None:
    """Time of each garbage collection, by generation (a full one stalls the loop)."""
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            _note(f"gc gen{info['generation']}", time.perf_counter() - started[0])

    gc.callbacks.append(callback)


def install_probes(component: str, stats: Path) -> None:
    threading.Thread(target=_dump_forever, args=(stats,), daemon=True).start()
    _gc_probe()
    from flamenco.client import AsyncApi

    def http_after(result: Any, api: Any, method: str, path: str, *args: Any, **kw: Any) -> None:
        body = args[1] if len(args) > 1 else kw.get("body")
        if path.endswith("/manager/sync"):
            _add("link.want", body.want)
            _add("link.held_sent", len(body.held))
            _add("link.leases", len(result.leases))
            _add("link.revoked", len(result.revoked))
        elif path.endswith("/manager/updates"):
            _add("link.updates_sent", len(body.updates))

    original_call = AsyncApi.call

    @functools.wraps(original_call)
    async def call(self: Any, method: str, path: str, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        result = await original_call(self, method, path, *args, **kw)
        _note(f"http {path}", time.perf_counter() - t0)
        with contextlib.suppress(Exception):
            http_after(result, self, method, path, *args, **kw)
        return result

    AsyncApi.call = call  # type: ignore[method-assign]

    if component == "manager":
        from flamenco.manager.service import ManagerService
        from flamenco.manager.upstream import ServerLink
        from flamenco.outbox import Outbox

        def assigned(result: Any, *args: Any, **kw: Any) -> None:
            _add("assign.hit" if result is not None else "assign.miss")

        def taken(result: Any, svc: Any, leases: list) -> None:
            _add("leases.taken", len(leases))

        def updates(result: Any, svc: Any, worker: Any, batch: list) -> None:
            _add("updates.received", len(batch))

        for name in (
            "authenticate_worker",
            "_check_in",
            "_pick",
            "register_worker",
            "revoke",
            "want",
            "held_ids",
            "progress",
            "workers",
            "reap_silent_workers",
            "blob_path",
            "_download",
        ):
            _wrap(ManagerService, name, f"mgr.{name}")
        _wrap(ManagerService, "_assign", "mgr._assign", assigned)
        _wrap(ManagerService, "take_leases", "mgr.take_leases", taken)
        _wrap(ManagerService, "apply_worker_updates", "mgr.apply_worker_updates", updates)
        _wrap(ManagerService, "worker_sync", "mgr.worker_sync (wall, incl. long-poll wait)")
        _wrap(ManagerService, "_wait_for_assignment", "mgr.wait_for_assignment")
        _wrap(ManagerService, "saved", "mgr.saved")
        _wrap(ServerLink, "sync_once", "link.sync_once (wall, incl. held time)")
        _wrap(ServerLink, "deliver", "link.deliver (wall)")
        _wrap(Outbox, "flush", "link.outbox.flush (wall)")
        _wrap(Outbox, "add_update", "mgr.outbox.add_update")

        original_run = ServerLink.run

        async def run(self: Any, stop: asyncio.Event) -> None:
            monitor = asyncio.create_task(_lag_monitor())
            try:
                await original_run(self, stop)
            finally:
                monitor.cancel()

        ServerLink.run = run  # type: ignore[method-assign]
    elif component == "server":
        from flamenco.server import transitions
        from flamenco.server.auth import AuthService
        from flamenco.server.leases import LeaseService

        for name in ("_sync", "expire_leases", "_renew", "_lease", "_apply"):
            _wrap(LeaseService, name, f"srv.leases.{name}")
        _wrap(LeaseService, "sync_waiting", "srv.leases.sync_waiting (wall, incl. held time)")
        _wrap(LeaseService, "apply_updates", "srv.leases.apply_updates (batch)")
        _wrap(transitions, "refresh_job_status", "srv.transitions.refresh_job_status")
        _wrap(AuthService, "manager_for_token", "srv.auth.manager_for_token")


def _probe_main(argv: list[str]) -> None:
    component, stats, *args = argv
    install_probes(component, Path(stats))
    from flamenco.cli.main import app

    app(args=args, prog_name="flamenco")


# ---- py-spy ----------------------------------------------------------------------------------


def pyspy_path() -> Path | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return candidate if candidate.exists() else None


def pyspy_record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen | None:
    """Sample a process for `seconds` into collapsed stacks (`--format raw`)."""
    exe = pyspy_path()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            str(exe),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


IDLE_LEAVES = ("Condition.wait (", "EpollSelector.select (", "Event.wait (", "_worker (")


@dataclass
class Profile:
    samples: int = 0  # busy samples only (idle waits that py-spy still sampled are dropped)
    idle: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    leaf: Counter[str] = field(default_factory=Counter)
    threads: Counter[str] = field(default_factory=Counter)
    main_inclusive: Counter[str] = field(default_factory=Counter)  # the event-loop thread
    main_leaf: Counter[str] = field(default_factory=Counter)


def _matches(stack: str, needles: tuple[str, ...]) -> bool:
    """Any needle in the stack; needles starting with '-' must NOT be in it."""
    wanted = [n for n in needles if not n.startswith("-")]
    unwanted = [n[1:] for n in needles if n.startswith("-")]
    return any(n in stack for n in wanted) and not any(n in stack for n in unwanted)


def read_collapsed(path: Path, buckets: dict[str, tuple[str, ...]]) -> Profile:
    """Samples per bucket: a bucket counts a sample if its stack matches (see _matches)."""
    prof = Profile()
    if not path.exists():
        return prof
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if len(frames) < 2:
            continue
        if frames[-1].startswith(IDLE_LEAVES):
            prof.idle += n
            continue
        thread = frames[0].split(": ", 1)[-1].strip()
        main = thread.startswith("MainThread")
        prof.samples += n
        prof.threads["MainThread" if main else thread] += n
        for name, needles in buckets.items():
            if _matches(stack, needles):
                prof.inclusive[name] += n
                if main:
                    prof.main_inclusive[name] += n
        prof.leaf[frames[-1]] += n
        if main:
            prof.main_leaf[frames[-1]] += n
    return prof


# ---- simulated Workers --------------------------------------------------------------------


class SimClient:
    """One aiohttp session for all simulated Workers of the process (one connection each)."""

    def __init__(self, base_url: str) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.base = base_url.rstrip("/")
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=120),
            json_serialize=json.dumps,
        )

    async def post(self, path: str, body: dict[str, Any], token: str = "") -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.post(
            self.base + path, data=json.dumps(body), headers=headers
        ) as resp:
            raw = await resp.read()
            return resp.status, (json.loads(raw) if raw else None)

    async def get_bytes(self, path: str, token: str) -> tuple[int, int]:
        """GET a body and count its bytes (not kept)."""
        headers = {"Authorization": f"Bearer {token}"}
        n = 0
        async with self.session.get(self.base + path, headers=headers) as resp:
            async for chunk in resp.content.iter_chunked(1 << 20):
                n += len(chunk)
            return resp.status, n

    async def close(self) -> None:
        await self.session.close()


class WorkerConnection:
    """One simulated Worker's keep-alive HTTP/1.1 connection for JSON POSTs, and no more.

    aiohttp costs about 0.3 ms of CPU per request; on a 2-core machine that the farm shares
    with the load generator, that CPU is taken from the Manager under test. Real Workers run
    on machines of their own, so the simulated ones should cost as little as possible.
    """

    def __init__(self, base_url: str, token: str) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.head = (
            f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST a JSON body; (status, parsed JSON reply). Reconnects once if the server had
        closed the idle connection."""
        data = json.dumps(body).encode()
        request = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            path.encode(),
            self.head,
            len(data),
            data,
        )
        for attempt in (1, 2):
            try:
                return await self._exchange(request)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, request: bytes) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        raw = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def register_workers(
    client: SimClient, secret: str, count: int, prefix: str = "sim", parallel: int = 50
) -> list[tuple[str, str]]:
    """Register `count` Workers; return (name, token) of each."""
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> tuple[str, str]:
        name = f"{prefix}-{i:04d}"
        body = {"secret": secret, "name": name, "platform": "sim", "cpu_count": 1}
        async with gate:
            for attempt in range(5):
                status, reply = await client.post("/api/v1/workers/register", body)
                if status == 200:
                    return name, reply["token"]
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"registering {name} failed: HTTP {status} {reply}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def new_update_id() -> str:
    """An update id as the Worker of the code under test makes it (`wire.new_update_id`,
    ordered by time), or a random one as Workers made them before it."""
    try:
        from flamenco.wire import new_update_id as worker_update_id
    except ImportError:
        return uuid.uuid4().hex
    return worker_update_id()


def completed_update(task_id: str, worker: str) -> dict[str, Any]:
    return {
        "update_id": new_update_id(),
        "task_id": task_id,
        "status": "completed",
        "progress": 1.0,
        "activity": "done",
        "worker": worker,
    }


# ---- job files on the Server -----------------------------------------------------------------


def upload_blob(farm: TestFarm, path: Path) -> str:
    from flamenco import wire
    from flamenco.blobs import sha256_file

    api = farm.api()
    sha = sha256_file(path)
    missing = api.call(
        "POST", "/api/v1/blobs/missing", wire.BlobQueryResult, wire.BlobQuery(hashes=[sha])
    ).missing
    if missing:
        api.upload_blob(path, sha)
    return sha


def submit_jobs(
    farm: TestFarm, blend: Path, tasks: int, job_size: int, name: str = "bench"
) -> list[str]:
    """Jobs of `job_size` one-frame tasks (frames 1-N, chunk 1) until `tasks` exist."""
    from flamenco import wire

    sha = upload_blob(farm, blend)
    api = farm.api()
    job_ids = []
    left, n = tasks, 0
    while left > 0:
        size = min(job_size, left)
        sub = wire.JobSubmission(
            name=f"{name}-{n:03d}",
            files={blend.name: sha},
            settings={"blend": blend.name, "frames": f"1-{size}", "chunk_size": 1},
        )
        job_ids.append(api.call("POST", "/api/v1/jobs", wire.Job, sub).id)
        left -= size
        n += 1
    return job_ids


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        _probe_main(sys.argv[2:])
    else:
        print(__doc__)
