"""Notifications of a job's end, the pure part: which URLs are accepted, how a delivery is
signed and checked, and when a failed delivery is tried again.

The signature is HMAC-SHA256 with the Server's notification secret over the bytes
`<timestamp>.<body>`: the timestamp (Unix seconds, the `X-Flamenco-Timestamp` header) is
signed with the body, so that a receiver that refuses old timestamps cannot be fed a replayed
delivery (README, "Notifications").
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from flamenco.core.urls import check_http_url

SIGNATURE_HEADER = "X-Flamenco-Signature"
TIMESTAMP_HEADER = "X-Flamenco-Timestamp"
DELIVERY_HEADER = "X-Flamenco-Delivery"  # the same for every attempt of one delivery
SIGNATURE_PREFIX = "sha256="


class BadNotifyUrl(ValueError):
    """A notification URL that cannot be posted to; the message says why in one sentence."""


def check_notify_url(url: str) -> str:
    """The URL, if an http(s) URL with a host; else BadNotifyUrl."""
    try:
        return check_http_url(url, "The notification URL")
    except ValueError as exc:
        raise BadNotifyUrl(str(exc)) from None


def url_for_log(url: str) -> str:
    """The URL as logs show it: scheme, host and port only, since a receiver's path or query
    often holds its own secret (a chat service's webhook token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def signed_bytes(timestamp: int, body: bytes) -> bytes:
    return f"{timestamp}.".encode() + body


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), signed_bytes(timestamp, body), hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, now: float, max_age_s: float = 300
) -> bool:
    """Whether `signature` signs `body` at `timestamp` (the headers as received) with `secret`,
    and the timestamp is within `max_age_s` of `now`."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > max_age_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def retry_delay(attempts: int, first_s: float, max_s: float) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1 for the first): `first_s`,
    doubling each time, never more than `max_s`."""
    return min(max_s, first_s * 2 ** max(0, min(attempts - 1, 60)))


def next_attempt_in(
    attempts: int, age_s: float, first_s: float, max_s: float, give_up_s: float
) -> float | None:
    """When to try again after `attempts` failures of a delivery queued `age_s` seconds ago:
    seconds from now, or None once the next try would come after `give_up_s`."""
    delay = retry_delay(attempts, first_s, max_s)
    return None if age_s + delay > give_up_s else delay
