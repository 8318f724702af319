"""Notifications of a job's end through the services, on real SQLite and PostgreSQL, posted
to a real receiver on 127.0.0.1: queued by the door with the job's final status, signed,
retried on the back-off schedule, delivered once, given up after the window."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from serverkit import BLEND, add_manager, alice, lease_sync, make_services, task_update
from sqlalchemy import select

from flamenco import wire
from flamenco.config import BadSetting, ServerSettings, load
from flamenco.core.actions import JobAction
from flamenco.core.states import TaskStatus
from flamenco.db import make_engine, make_sessions, utcnow
from flamenco.errors import Unprocessable
from flamenco.server.models import JobRow, Notification
from flamenco.server.notifications import NotifyPolicy, install_policy, notify_secret
from flamenco.server.notify_delivery import NotificationSender
from flamenco.server.services import ServerServices
from notifykit import Receiver


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(failures=("500", "drop")) as r:
        yield r


class Clock:
    def __init__(self) -> None:
        self.at = utcnow()

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def submit(svc: ServerServices, frames: str, notify: str | None = None) -> wire.Job:
    sha = svc.blobs.put_file(BLEND)
    sub = wire.JobSubmission(
        name=f"job {frames}",
        files={"s.blend": sha},
        settings={"blend": "s.blend", "frames": frames, "chunk_size": 1},
        notify=notify,
    )
    return svc.jobs.submit(sub, submitter="alice")


def notifications(svc: ServerServices, job_id: str) -> list[Notification]:
    with svc.jobs.sessions() as s:
        query = select(Notification).where(Notification.job_id == job_id)
        return list(s.scalars(query.order_by(Notification.id)))


def test_a_canceled_job_is_delivered_once_after_a_500_and_a_dropped_connection(
    svc: ServerServices, receiver: Receiver
) -> None:
    job = submit(svc, "1-3", notify=receiver.url)
    assert notifications(svc, job.id) == []  # nothing until it ends
    svc.jobs.act(job.id, JobAction.CANCEL, alice(svc))
    (queued,) = notifications(svc, job.id)
    assert (queued.url, queued.attempts, queued.delivered) == (receiver.url, 0, None)

    receiver.secret = notify_secret(svc.jobs.sessions).secret
    clock = Clock()
    sender = NotificationSender(svc.jobs.sessions, svc.settings, now=clock)
    assert sender.send_due() == 0  # answered 500
    (row,) = notifications(svc, job.id)
    assert (row.attempts, row.last_error) == (1, "HTTP 500")
    assert row.next_at == clock.at + timedelta(seconds=5)
    assert sender.send_due() == 0 and len(receiver.all()) == 1  # not due yet: not sent

    clock.advance(5)
    assert sender.send_due() == 0  # the connection dropped
    (row,) = notifications(svc, job.id)
    assert row.attempts == 2 and "RemoteProtocolError" in row.last_error
    assert row.next_at == clock.at + timedelta(seconds=10)

    clock.advance(10)
    assert sender.send_due() == 1
    (row,) = notifications(svc, job.id)
    assert (row.attempts, row.next_at, row.delivered, row.last_error) == (3, None, clock.at, "")
    clock.advance(3600)
    assert sender.send_due() == 0

    sent = receiver.all()
    assert [r.answer for r in sent] == ["500", "drop", "200"]
    assert all(r.signed for r in sent) and {r.delivery for r in sent} == {str(row.id)}
    (accepted,) = receiver.accepted()
    document = wire.JobEnded.model_validate_json(accepted.body)
    assert (document.job_id, document.name, document.status) == (job.id, "job 1-3", "canceled")
    assert (document.frames_done, document.frames_total, document.frames) == (0, 3, [])
    assert document.dashboard_url == f"http://127.0.0.1:8888/jobs/{job.id}"
    assert document.frames_url == f"http://127.0.0.1:9999/api/v1/jobs/{job.id}/frames"


def test_a_completed_job_goes_to_the_servers_url_and_its_own_once_each(
    svc: ServerServices, receiver: Receiver
) -> None:
    farm_wide = f"{receiver.url}?farm"
    policy = NotifyPolicy(farm_wide, "https://farm:9999", "https://dash.example")
    install_policy(svc.jobs.sessions, policy)
    plain, own, same = submit(svc, "1"), submit(svc, "2", receiver.url), submit(svc, "3", farm_wide)
    site = add_manager(svc, "site")
    leases = lease_sync(svc, site, want=3).leases
    svc.leases.apply_updates(site, [task_update(t.task_id, TaskStatus.COMPLETED) for t in leases])

    assert [n.url for n in notifications(svc, plain.id)] == [farm_wide]
    assert [n.url for n in notifications(svc, own.id)] == [receiver.url, farm_wide]
    assert [n.url for n in notifications(svc, same.id)] == [farm_wide]  # the same URL once
    (first,) = notifications(svc, plain.id)
    document = wire.JobEnded.model_validate_json(first.body)
    assert (document.status, document.frames_total) == ("completed", 1)
    assert document.dashboard_url == f"https://dash.example/jobs/{plain.id}"


def test_two_servers_on_one_database_post_a_delivery_once(svc: ServerServices) -> None:
    """While one Server's POST is in flight, another Server's sender, on the same database,
    finds the delivery taken and leaves it: the receiver gets it once."""
    with Receiver() as slow:
        job = submit(svc, "1", notify=slow.url)
        svc.jobs.act(job.id, JobAction.CANCEL, alice(svc))
        slow.secret = notify_secret(svc.jobs.sessions).secret
        slow.hold = True
        other_engine = make_engine(svc.engine.url.render_as_string(hide_password=False))
        try:
            first = NotificationSender(svc.jobs.sessions, svc.settings)
            second = NotificationSender(make_sessions(other_engine), svc.settings)
            delivered: list[int] = []
            sending = threading.Thread(target=lambda: delivered.append(first.send_due()))
            sending.start()
            try:
                assert slow.arrived.wait(timeout=30), "the first Server never posted"
                assert second.send_due() == 0  # the delivery is the first Server's now
            finally:
                slow.release.set()
                sending.join(timeout=30)
        finally:
            other_engine.dispose()
        assert delivered == [1]
        assert [r.answer for r in slow.all()] == ["200"]
        (row,) = notifications(svc, job.id)
        assert (row.attempts, row.next_at, row.last_error) == (1, None, "")
        assert row.delivered is not None


def test_delivery_is_given_up_after_its_window(svc: ServerServices) -> None:
    with Receiver(failures=("500",) * 10) as failing:
        job = submit(svc, "1", notify=failing.url)
        svc.jobs.act(job.id, JobAction.CANCEL, alice(svc))
        clock = Clock()
        settings = dataclasses.replace(svc.settings, notify_give_up_s=20)
        sender = NotificationSender(svc.jobs.sessions, settings, now=clock)
        for wait in (0, 5, 10):  # tries at 0, 5 and 15 s; the next would be at 35 s
            clock.advance(wait)
            assert sender.send_due() == 0
        (row,) = notifications(svc, job.id)
        assert (row.attempts, row.next_at, row.given_up) == (3, None, clock.at)
        clock.advance(3600)
        assert sender.send_due() == 0 and len(failing.all()) == 3


def test_a_job_without_a_url_queues_nothing(svc: ServerServices) -> None:
    job = submit(svc, "1")
    svc.jobs.act(job.id, JobAction.CANCEL, alice(svc))
    assert notifications(svc, job.id) == []


def test_a_url_that_is_not_http_is_refused_with_one_sentence(svc: ServerServices) -> None:
    with pytest.raises(Unprocessable) as refused:
        submit(svc, "1", notify="ftp://example.com/hook")
    assert refused.value.message == (
        "The notification URL 'ftp://example.com/hook' is not an http:// or https:// URL "
        "with a host."
    )
    with svc.jobs.sessions() as s:
        assert list(s.scalars(select(JobRow.id))) == []  # nothing created


def test_the_secret_is_kept_until_rotated(svc: ServerServices) -> None:
    first = notify_secret(svc.jobs.sessions)
    assert notify_secret(svc.jobs.sessions) == first
    rotated = notify_secret(svc.jobs.sessions, rotate=True)
    assert rotated.secret != first.secret and len(rotated.secret) >= 40
    assert notify_secret(svc.jobs.sessions) == rotated


def test_a_server_notify_url_that_is_not_http_is_a_bad_setting(tmp_path: Path) -> None:
    with pytest.raises(BadSetting, match="notify_url: The notification URL 'hooks' is not"):
        NotifyPolicy.of(ServerSettings(data_dir=tmp_path, notify_url="hooks"))


def test_the_servers_url_and_dashboard_come_from_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAMENCO_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("FLAMENCO_SERVER_NOTIFY_URL", "https://hooks.example/farm")
    monkeypatch.setenv("FLAMENCO_SERVER_DASHBOARD_URL", "https://dash.example/")
    policy = NotifyPolicy.of(load(ServerSettings, {"host": "10.1.2.3", "port": 9001}))
    assert policy == NotifyPolicy(
        "https://hooks.example/farm", "http://10.1.2.3:9001", "https://dash.example"
    )
    plain = NotifyPolicy.of(load(ServerSettings, {"host": "10.1.2.3"}))
    assert plain == NotifyPolicy(
        "https://hooks.example/farm", "http://10.1.2.3:9999", "https://dash.example"
    )
    monkeypatch.delenv("FLAMENCO_SERVER_DASHBOARD_URL")
    assert NotifyPolicy.of(load(ServerSettings)).dashboard_url == "http://127.0.0.1:8888"
