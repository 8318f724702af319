"""Timing probes for the benchmark: run a `flamenco` component with its steps timestamped.

    FLAMENCO_BENCH_TRACE=trace.jsonl python bench/probes.py worker --manager URL ...

runs exactly what `flamenco worker --manager URL ...` runs, with a few methods of the Worker,
the Manager and the HTTP client wrapped so that each call appends one JSON line
``{"c": component, "ev": name, "t0": start, "t1": end, ...}`` (wall-clock seconds, so the
lines of all processes on one machine can be merged) to the trace file. Behaviour is
unchanged; the probes cost a few tens of microseconds per call.

Without FLAMENCO_BENCH_TRACE nothing is patched.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

TRACE_ENV = "FLAMENCO_BENCH_TRACE"

_lock = threading.Lock()
_sink: Any = None
_component = "?"


def record(ev: str, t0: float, t1: float | None = None, **fields: Any) -> None:
    if _sink is None:
        return
    line = json.dumps({"c": _component, "ev": ev, "t0": t0, "t1": t1, **fields}, default=str)
    with _lock:
        _sink.write(line + "\n")
        _sink.flush()


def _wrap_async(
    owner: type, name: str, label: str, describe: Callable[..., dict[str, Any]] | None = None
) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def probe(*args: Any, **kwargs: Any) -> Any:
        t0 = time.time()
        error = None
        result = None
        try:
            result = await original(*args, **kwargs)
            return result
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            extra = {}
            if describe is not None:
                try:
                    extra = describe(result, *args, **kwargs)
                except Exception:  # a probe must never break the component
                    extra = {}
            if error:
                extra["error"] = error
            record(label, t0, time.time(), **extra)

    setattr(owner, name, probe)


def _wrap_sync(
    owner: type, name: str, label: str, describe: Callable[..., dict[str, Any]] | None = None
) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def probe(*args: Any, **kwargs: Any) -> Any:
        t0 = time.time()
        result = original(*args, **kwargs)
        extra = {}
        if describe is not None:
            try:
                extra = describe(result, *args, **kwargs)
            except Exception:
                extra = {}
        record(label, t0, time.time(), **extra)
        return result

    setattr(owner, name, probe)


# ---- what each probe records ---------------------------------------------------------------


def _http(result: Any, api: Any, method: str, path: str, *args: Any, **kwargs: Any) -> dict:
    info: dict[str, Any] = {"method": method, "path": path}
    body = args[1] if len(args) > 1 else kwargs.get("body")
    if path.endswith("/worker/sync") and body is not None:
        info["want_task"] = body.want_task
        info["assigned"] = getattr(getattr(result, "assignment", None), "task_id", None)
    if path.endswith("/manager/sync") and body is not None:
        info["want"] = body.want
        info["leases"] = len(getattr(result, "leases", []) or [])
    if path.endswith("/updates") and body is not None:
        info["n"] = len(body.updates)
        info["statuses"] = [str(u.status) for u in body.updates if u.status is not None]
    return info


def _upload(result: Any, api: Any, path: str, *args: Any, **kwargs: Any) -> dict:
    return {"method": "PUT", "path": path}


def _task(result: Any, agent: Any, run: Any, *args: Any, **kwargs: Any) -> dict:
    return {"task": run.a.task_id, "frames": list(run.a.frames)}


def _render(result: Any, blender: Any, frames: Any, *args: Any, **kwargs: Any) -> dict:
    return {"frames": list(frames), "pid": blender.pid}


def _count(result: Any, *args: Any, **kwargs: Any) -> dict:
    return {"n": result if isinstance(result, int) else None}


def _worker_sync(result: Any, svc: Any, worker: Any, req: Any) -> dict:
    return {
        "want_task": req.want_task,
        "assigned": getattr(getattr(result, "assignment", None), "task_id", None),
    }


def _leases(result: Any, svc: Any, leases: list) -> dict:
    return {"n": len(leases)}


def _want(result: Any, *args: Any) -> dict:
    return {"want": result}


def _updates(result: Any, svc: Any, worker: Any, updates: list) -> dict:
    return {"n": len(updates), "statuses": [str(u.status) for u in updates if u.status]}


def install(component: str, path: str) -> None:
    """Patch the classes a component uses; call before the component starts."""
    global _sink, _component
    _component = component
    _sink = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    from flamenco.client import AsyncApi
    from flamenco.outbox import Outbox

    _wrap_async(AsyncApi, "call", "http", _http)
    _wrap_async(AsyncApi, "upload_file", "http", _upload)
    _wrap_async(Outbox, "flush", "outbox.flush", _count)

    if component == "worker":
        from flamenco.worker.agent import WorkerAgent
        from flamenco.worker.blender_pool import BlenderPool
        from flamenco.worker.delivery import Delivery
        from flamenco.worker.lent_blender import LentBlender
        from flamenco.worker.warm_blender import WarmBlender

        _wrap_async(WorkerAgent, "_run_task", "task", _task)
        _wrap_async(WorkerAgent, "_fetch_files", "fetch_files")
        _wrap_async(BlenderPool, "for_job", "warm_blender")
        _wrap_async(Delivery, "deliver", "deliver")
        _wrap_async(WorkerAgent, "_sync_once", "sync_once")
        _wrap_async(WarmBlender, "start", "blender.start")
        _wrap_async(WarmBlender, "render", "blender.render", _render)
        _wrap_async(WarmBlender, "terminate", "blender.terminate")
        original_events = LentBlender._events

        def events(self: Any, *args: Any, **kwargs: Any) -> Any:
            relay = original_events(self, *args, **kwargs)

            async def on_event(event: dict[str, Any]) -> None:
                if event.get("event") in ("frame", "ready", "done"):
                    record(
                        "blender." + event["event"],
                        time.time(),
                        task=self.run.a.task_id,
                        frame=event.get("frame"),
                        seconds=event.get("seconds"),
                    )
                await relay(event)

            return on_event

        LentBlender._events = events  # type: ignore[method-assign]
    elif component == "manager":
        from flamenco.manager.service import ManagerService
        from flamenco.manager.upstream import ServerLink

        _wrap_async(ManagerService, "worker_sync", "mgr.worker_sync", _worker_sync)
        _wrap_async(ManagerService, "receive_frame", "mgr.receive_frame")
        _wrap_sync(ManagerService, "apply_worker_updates", "mgr.apply_updates", _updates)
        _wrap_sync(ManagerService, "take_leases", "mgr.take_leases", _leases)
        _wrap_sync(ManagerService, "want", "mgr.want", _want)
        _wrap_async(ServerLink, "sync_once", "mgr.link_sync")


def install_from_env(component: str) -> None:
    path = os.environ.get(TRACE_ENV)
    if path:
        install(component, path)


def run_cli(argv: list[str]) -> None:
    """Run the `flamenco` command line in this process, as `python -m flamenco` would."""
    from flamenco.cli.main import app

    app(args=argv, prog_name="flamenco")


def main() -> None:
    argv = sys.argv[1:]
    install_from_env(argv[0] if argv else "?")
    run_cli(argv)


if __name__ == "__main__":
    main()
