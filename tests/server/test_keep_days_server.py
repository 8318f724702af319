"""A real Server started with --keep-days deletes an old finished job as it starts, logging
its id, and keeps a recent one; without it, it keeps everything."""

from __future__ import annotations

from datetime import timedelta

import httpx
from serverkit import BLEND
from sqlalchemy import update

from farmkit import TestFarm, wait_until
from flamenco import wire
from flamenco.cli.up import bootstrap
from flamenco.config import ServerSettings
from flamenco.core.actions import JobAction
from flamenco.db import utcnow
from flamenco.server.models import JobRow
from flamenco.server.services import build_services


def _canceled_jobs(farm: TestFarm, ages_in_days: list[float]) -> list[str]:
    """Jobs canceled `ages_in_days` ago, written into the Server's database before it runs."""
    secrets = bootstrap(farm.root)
    services = build_services(ServerSettings(data_dir=farm.root / "server"))
    try:
        admin = services.auth.user_for_token(secrets.admin_token)
        scene = services.blobs.put_file(BLEND)
        ids = []
        for age in ages_in_days:
            job = services.jobs.submit(
                wire.JobSubmission(
                    name=f"{age} days old",
                    files={"s.blend": scene},
                    settings={"blend": "s.blend", "frames": "1", "chunk_size": 1},
                ),
                submitter=admin.name,
            )
            services.jobs.act(job.id, JobAction.CANCEL, admin)
            with services.jobs.sessions.begin() as s:
                when = utcnow() - timedelta(days=age)
                s.execute(update(JobRow).where(JobRow.id == job.id).values(updated=when))
            ids.append(job.id)
        return ids
    finally:
        services.close()


def _exists(farm: TestFarm, job_id: str) -> bool:
    answer = httpx.get(
        f"{farm.server_url}/api/v1/jobs/{job_id}",
        headers={"Authorization": f"Bearer {farm.token}"},
        timeout=10,
    )
    assert answer.status_code in (200, 404), answer.text
    return answer.status_code == 200


def test_a_server_with_keep_days_deletes_old_finished_jobs_when_it_starts(
    farm: TestFarm,
) -> None:
    old, recent = _canceled_jobs(farm, [30, 1])
    farm.start_server(env={"FLAMENCO_SERVER_KEEP_DAYS": "7"})
    wait_until(lambda: not _exists(farm, old), 30, "the 30-day-old job to be deleted")
    assert _exists(farm, recent)
    server_log = farm.logs()
    assert f"deleted 1 finished jobs older than that: {old}" in server_log


def test_a_server_keeps_every_job_by_default(farm: TestFarm) -> None:
    (old,) = _canceled_jobs(farm, [3650])
    farm.start_server()
    assert _exists(farm, old)
    assert farm.job(old).status == "canceled"
