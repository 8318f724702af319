"""Notifications on a real farm (real Server, Manager, Worker and Blender processes): a job
that renders and one canceled while rendering each reach a receiver on 127.0.0.1 once, signed
with `flamenco notify secret`, after the receiver failed the first two attempts; a Server
restarted while a notification is pending still delivers it; a URL that is not http(s) is
refused at submit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from farmkit import TestFarm, active_task, wait_until
from flamenco import wire
from notifykit import Receiver

pytestmark = pytest.mark.blender

FAST_RETRIES = {
    "FLAMENCO_SERVER_NOTIFY_RETRY_S": "0.5",  # the back-off, small for the test
    "FLAMENCO_SERVER_DASHBOARD_URL": "http://dashboard.test:8888",
}


def submit(farm: TestFarm, scene: Path, *args: str) -> str:
    done = farm.cli("submit", str(scene), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def the_secret(farm: TestFarm) -> str:
    done = farm.cli("notify", "secret")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def outbox(farm: TestFarm) -> list[tuple[str, int, bool, str]]:
    """Each notification row: job, attempts, whether delivered, last error (the real file)."""
    with sqlite3.connect(farm.root / "server" / "server.sqlite") as db:
        rows = db.execute(
            "SELECT job_id, attempts, delivered IS NOT NULL, last_error FROM notifications"
            " ORDER BY id"
        ).fetchall()
    return [(job, attempts, bool(delivered), error) for job, attempts, delivered, error in rows]


def test_a_rendered_and_a_canceled_job_each_notify_once_after_two_failed_attempts(
    farm: TestFarm, demo_scene: Path, endless_scene: Path
) -> None:
    with Receiver(failures=("500", "drop")) as receiver:
        farm.start_server(env=FAST_RETRIES)
        receiver.secret = the_secret(farm)
        farm.start_manager()
        farm.start_worker("w1")

        rendered = submit(farm, demo_scene, "--frames", "1-3", "--notify", receiver.url)
        job = farm.wait_job(rendered)
        assert job.status == "completed", farm.logs()
        wait_until(lambda: len(receiver.accepted()) == 1, 60, "the completed job's notification")

        endless = submit(farm, endless_scene, "--frames", "1-2", "--notify", receiver.url)
        wait_until(lambda: active_task(farm, endless), 120, "a render of the endless job")
        assert farm.cli("jobs", "cancel", endless).returncode == 0
        wait_until(lambda: len(receiver.accepted()) == 2, 60, "the canceled job's notification")

        assert [r.answer for r in receiver.all()] == ["500", "drop", "200", "200"]
        assert all(r.signed for r in receiver.all())
        completed, canceled = (
            wire.JobEnded.model_validate_json(r.body) for r in receiver.accepted()
        )
        assert (completed.job_id, completed.name, completed.status) == (
            rendered,
            job.name,
            "completed",
        )
        assert (completed.frames_done, completed.frames_total, completed.frames) == (
            3,
            3,
            [1, 2, 3],
        )
        assert completed.dashboard_url == f"http://dashboard.test:8888/jobs/{rendered}"
        assert completed.frames_url.endswith(f"/api/v1/jobs/{rendered}/frames")
        assert (canceled.job_id, canceled.status, canceled.frames_total) == (endless, "canceled", 2)
        # Each job end delivered once, and nothing left to send (the receiver counts a POST
        # before it answers; the Server records the delivery once it has the answer).
        delivered = [(rendered, 3, True, ""), (endless, 1, True, "")]
        wait_until(lambda: outbox(farm) == delivered, 30, "both deliveries recorded")
        assert len(receiver.all()) == 4
        server_log = farm.procs[0].output()
        logged = receiver.url.removesuffix("/hook") + "/…"  # never the path: it may be a secret
        assert "/hook" not in server_log
        assert f"job {rendered}: notification 1 to {logged} failed (attempt 1: HTTP 500)" in (
            server_log
        )
        assert f"job {rendered}: notification 1 delivered to {logged} (attempt 3)" in (server_log)


def test_a_pending_notification_is_delivered_after_a_server_restart(
    farm: TestFarm, demo_scene: Path
) -> None:
    with Receiver() as receiver:
        receiver.refusing.set()  # the receiver is down for now
        farm.start_server(env=FAST_RETRIES)
        server = farm.procs[-1]
        receiver.secret = the_secret(farm)

        refused = farm.cli("submit", str(demo_scene), "--frames", "1", "--notify", "ftp://h/x")
        assert refused.returncode == 1
        assert (
            "Error: The notification URL 'ftp://h/x' is not an http:// or https:// URL with a "
            "host." in refused.stderr
        )
        listed = farm.cli("jobs", "list", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == []  # nothing created

        job_id = submit(farm, demo_scene, "--frames", "1-2", "--notify", receiver.url)
        assert farm.cli("jobs", "cancel", job_id).returncode == 0  # queued, never rendered
        wait_until(lambda: len(receiver.all()) >= 2, 60, "two refused attempts")
        server.stop()
        ((job, attempts, delivered, error),) = outbox(farm)
        assert (job, delivered, error) == (job_id, False, "HTTP 503") and attempts >= 2

        receiver.refusing.clear()
        farm._wait_http(farm.server_url, farm.restart(server))
        (accepted,) = wait_until(receiver.accepted, 60, "the notification after the restart")
        document = wire.JobEnded.model_validate_json(accepted.body)
        assert (document.job_id, document.status) == (job_id, "canceled")
        assert accepted.signed
        assert outbox(farm) == [(job_id, len(receiver.all()), True, "")]
