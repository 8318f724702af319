"""Sending the queued notifications (`notifications.py`): an asyncio task of the Server that
POSTs each due delivery in a thread, never in a request.

Each attempt signs the stored body with the current secret and a fresh timestamp
(core/notify.py). A 2xx answer delivers it; anything else (another status, a refused or
dropped connection, a timeout) is tried again after the back-off (`notify_retry_s` doubling up
to `notify_retry_max_s`) until `notify_give_up_s` after it was queued. What is due and how each
attempt went is in the `notifications` table, so a restarted Server goes on where it stopped.

Several Servers on one database each run a sender: a Server claims a delivery (moves its
`next_at` past its attempt, `_claim`) before it posts it, and the Server that does not win
the claim leaves it alone, so each attempt is made once. A Server that stops between its
claim and its record leaves the delivery due again CLAIM_S later: at least once, never lost
(the receiver tells a repeat by its delivery id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from flamenco.aio import wait_any
from flamenco.config import ServerSettings
from flamenco.core.notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    next_attempt_in,
    sign,
    url_for_log,
)
from flamenco.db import utcnow
from flamenco.server.models import Notification
from flamenco.server.notifications import notify_secret

log = logging.getLogger("flamenco.server.notifications")

POST_TIMEOUT_S = 10.0
BATCH = 20  # deliveries taken per look; the rest at the next
LOOK_EVERY_S = 1.0  # a new job end is sent within this
CLAIM_S = 3 * POST_TIMEOUT_S  # a claimed delivery not recorded by then is due again


class NotificationSender:
    def __init__(
        self,
        sessions: sessionmaker,
        settings: ServerSettings,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.now = now

    def due(self) -> list[Notification]:
        with self.sessions() as s:
            query = (
                select(Notification)
                .where(Notification.next_at.is_not(None), Notification.next_at <= self.now())
                .order_by(Notification.next_at)
                .limit(BATCH)
            )
            return list(s.scalars(query))

    def send_due(self) -> int:
        """Attempt every due delivery once; return how many were delivered."""
        due = self.due()
        if not due:
            return 0
        secret = notify_secret(self.sessions).secret
        delivered = 0
        with httpx.Client(timeout=POST_TIMEOUT_S, follow_redirects=False) as client:
            for notification in due:
                if not self._claim(notification):
                    continue  # another Server on this database attempts it now
                error = self._post(client, secret, notification)
                self._record(notification, error)
                delivered += error is None
        return delivered

    def _claim(self, notification: Notification) -> bool:
        """Whether this Server won the attempt at a due delivery: the guarded UPDATE moves it
        out of everyone's `due` (on PostgreSQL a second Server's UPDATE waits for the first's
        commit, then finds it no longer due)."""
        now = self.now()
        with self.sessions.begin() as s:
            claimed = s.execute(
                update(Notification)
                .where(
                    Notification.id == notification.id,
                    Notification.next_at.is_not(None),
                    Notification.next_at <= now,
                )
                .values(next_at=now + timedelta(seconds=CLAIM_S))
                .execution_options(synchronize_session=False)
            )
        return claimed.rowcount == 1

    def _post(self, client: httpx.Client, secret: str, notification: Notification) -> str | None:
        """POST it once: None when the receiver took it, else what went wrong."""
        body = notification.body.encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            DELIVERY_HEADER: str(notification.id),
        }
        try:
            answer = client.post(notification.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if answer.is_success:
            return None
        return f"HTTP {answer.status_code}"

    def _record(self, notification: Notification, error: str | None) -> None:
        now = self.now()
        settings = self.settings
        with self.sessions.begin() as s:
            row = s.get(Notification, notification.id)
            if row is None:
                return
            row.attempts += 1
            extra = {"job": row.job_id}
            if error is None:
                row.delivered, row.next_at, row.last_error = now, None, ""
                log.info(
                    "job %s: notification %d delivered to %s (attempt %d)",
                    row.job_id,
                    row.id,
                    url_for_log(row.url),
                    row.attempts,
                    extra=extra,
                )
                return
            row.last_error = error
            age = (now - row.created).total_seconds()
            delay = next_attempt_in(
                row.attempts,
                age,
                settings.notify_retry_s,
                settings.notify_retry_max_s,
                settings.notify_give_up_s,
            )
            if delay is None:
                row.next_at, row.given_up = None, now
                log.warning(
                    "job %s: notification %d to %s given up after %d attempts: %s",
                    row.job_id,
                    row.id,
                    url_for_log(row.url),
                    row.attempts,
                    error,
                    extra=extra,
                )
                return
            row.next_at = now + timedelta(seconds=delay)
            log.warning(
                "job %s: notification %d to %s failed (attempt %d: %s); next in %gs",
                row.job_id,
                row.id,
                url_for_log(row.url),
                row.attempts,
                error,
                delay,
                extra=extra,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Send what is due, then look again every second, until `stop`; a failure (a
        database away for a moment) is logged and the next look tries again."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.send_due)
            except Exception:
                log.exception("sending notifications failed; will try again")
            await wait_any(stop, timeout=min(LOOK_EVERY_S, self.settings.notify_retry_s))
