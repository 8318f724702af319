"""A Worker's registration with its Manager, and its sign-off as it stops. The token it gets
is kept in its data folder (`worker.json`, its user's alone), so a restarted Worker is the
same Worker."""

from __future__ import annotations

import asyncio
import json
import logging

from flamenco import wire
from flamenco.aio import wait_any
from flamenco.client import AsyncApi, TlsFailure, Unreachable
from flamenco.config import WorkerSettings
from flamenco.procs import private_file

log = logging.getLogger("flamenco.worker")

MAX_BACKOFF_S = 10.0


async def register(
    api: AsyncApi, settings: WorkerSettings, info: wire.WorkerInfo, force: bool = False
) -> None:
    """Use the kept token for this Manager, or register (again, with `force`) for one."""
    identity_file = settings.data_dir / "worker.json"
    saved = json.loads(identity_file.read_text()) if identity_file.exists() else {}
    if not force and saved.get("manager") == settings.manager and saved.get("token"):
        api.set_token(saved["token"])
        return
    if saved.get("token"):  # lets the Manager tell this Worker from another of its name
        api.set_token(saved["token"])
    reg = wire.WorkerRegistration(secret=settings.secret, name=settings.name, **info.model_dump())
    done = await api.call("POST", "/api/v1/workers/register", wire.WorkerRegistered, reg)
    identity_file.write_text(
        json.dumps({"manager": settings.manager, "worker_id": done.worker_id, "token": done.token})
    )
    private_file(identity_file)
    api.set_token(done.token)
    log.info(
        "registered with %s as %s",
        settings.manager,
        done.worker_id,
        extra={"worker": settings.name},
    )


async def until_registered(
    api: AsyncApi, settings: WorkerSettings, info: wire.WorkerInfo, stop: asyncio.Event
) -> None:
    """Register, retrying with back-off while the Manager is unreachable."""
    delay = 1.0
    while not stop.is_set():
        try:
            await register(api, settings, info)
            return
        except TlsFailure as exc:
            # An untrusted certificate, or http:// to an HTTPS Manager: waiting mends
            # neither, so the Worker stops and says why instead of retrying unseen.
            log.error("%s", exc, extra={"worker": settings.name})
            raise
        except Unreachable as exc:
            log.warning("Manager unreachable, retrying: %s", exc)
        await wait_any(stop, timeout=delay)
        delay = min(delay * 2, MAX_BACKOFF_S)


async def sign_off(api: AsyncApi) -> None:
    """Tell the Manager this Worker stops: offline at once, what it held goes to others."""
    offline = wire.WorkerSync(status="offline")
    await api.call("POST", "/api/v1/worker/sync", wire.WorkerSyncReply, offline)
