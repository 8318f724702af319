"""--keep-days: the Server deletes finished jobs nobody touched for that many days.

The Server keeps everything by default (keep_days 0). With a number of days, a job that is
completed, failed or canceled and unchanged for longer is deleted through the one job-delete
door (`JobService.delete`), with its frames, thumbnails and artifacts and the blobs no other
job uses (`blob_gc.py` decides which). It runs when the Server starts and then every
`retention_interval_s` (an hour), logging each job it removed by id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from flamenco.aio import wait_any
from flamenco.core.states import FINISHED_JOB_STATUSES
from flamenco.db import utcnow
from flamenco.server.jobs import JobService
from flamenco.server.models import JobRow

log = logging.getLogger("flamenco.server")


class JobRetention:
    def __init__(
        self,
        sessions: sessionmaker,
        jobs: JobService,
        keep_days: float,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.jobs = jobs
        self.keep_days = keep_days
        self.now = now

    def expired(self) -> list[str]:
        """Ids of the finished jobs untouched for longer than keep_days, oldest first."""
        if self.keep_days <= 0:
            return []
        cutoff = self.now() - timedelta(days=self.keep_days)
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(JobRow.id)
                    .where(JobRow.status.in_(FINISHED_JOB_STATUSES), JobRow.updated < cutoff)
                    .order_by(JobRow.updated)
                )
            )

    def prune(self) -> list[str]:
        """Delete the expired jobs; return the ids of those deleted."""
        deleted = []
        cutoff = self.now() - timedelta(days=self.keep_days)
        for job_id in self.expired():
            if self.jobs.delete(job_id, None, finished_before=cutoff):
                deleted.append(job_id)
        if deleted:
            log.info(
                "keep-days %g: deleted %d finished jobs older than that: %s",
                self.keep_days,
                len(deleted),
                ", ".join(deleted),
            )
        return deleted

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Prune at once and then every interval until `stop`; a failure is logged and the
        next look tries again (a database away for a moment must not end the loop)."""
        if self.keep_days <= 0:
            return
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.prune)
            except Exception:
                log.exception("keep-days: deleting old finished jobs failed; will try again")
            await wait_any(stop, timeout=interval_s)
