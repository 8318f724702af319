"""Table-driven tests for flamenco.core.notify: accepted URLs, signing and checking a
delivery, and the back-off schedule of failed deliveries."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from flamenco.core.notify import (
    BadNotifyUrl,
    check_notify_url,
    next_attempt_in,
    retry_delay,
    sign,
    url_for_log,
    verify,
)

SECRET = "s3cret"
BODY = b'{"job_id":"abc","status":"completed"}'


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9000/hook", "https://hooks.example.com/x?y=1", " http://h/ "],
)
def test_urls_accepted(url: str) -> None:
    assert check_notify_url(url) == url.strip()


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "example.com/hook", "mailto:a@b.c", "http://", "file:///tmp/x", ""],
)
def test_urls_refused_with_one_sentence(url: str) -> None:
    with pytest.raises(BadNotifyUrl) as refused:
        check_notify_url(url)
    message = str(refused.value)
    assert "not an http:// or https:// URL" in message
    assert message.endswith(".") and message.count(". ") == 0


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://hooks.example.com/services/T0/B0/s3cret", "https://hooks.example.com/…"),
        ("http://127.0.0.1:9000/hook?token=abc", "http://127.0.0.1:9000/…"),
        ("http://user:pw@h.example:81", "http://h.example:81"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
    ],
)
def test_logs_show_a_url_without_its_path_query_or_credentials(url: str, logged: str) -> None:
    assert url_for_log(url) == logged


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, BODY) == f"sha256={expected}"


NOW = 1_700_000_100.0
GOOD = sign(SECRET, 1_700_000_000, BODY)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "signature", "accepted"),
    [
        (SECRET, "1700000000", BODY, GOOD, True),
        ("other", "1700000000", BODY, GOOD, False),  # wrong secret
        (SECRET, "1700000001", BODY, GOOD, False),  # timestamp changed
        (SECRET, "1700000000", BODY + b" ", GOOD, False),  # body changed
        (SECRET, "1700000000", BODY, GOOD.upper(), False),  # not the same text
        (SECRET, "1700000000", BODY, GOOD[:-1], False),  # cut short
        (SECRET, "soon", BODY, GOOD, False),  # not a number
        (SECRET, "1699999000", BODY, sign(SECRET, 1_699_999_000, BODY), False),  # too old
        (SECRET, "1700000300", BODY, sign(SECRET, 1_700_000_300, BODY), True),  # near future
    ],
)
def test_verify(secret: str, timestamp: str, body: bytes, signature: str, accepted: bool) -> None:
    assert verify(secret, timestamp, body, signature, now=NOW) is accepted


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(1, 5), (2, 10), (3, 20), (4, 40), (5, 80), (6, 160), (7, 300), (8, 300), (500, 300)],
)
def test_back_off_doubles_from_five_seconds_to_five_minutes(attempts: int, delay: float) -> None:
    assert retry_delay(attempts, first_s=5, max_s=300) == delay


@pytest.mark.parametrize(
    ("attempts", "age_s", "expected"),
    [
        (1, 0, 5),
        (3, 35, 20),
        (10, 3000, 300),
        (10, 3300, 300),  # the last try, at the hour exactly
        (10, 3301, None),  # it would come after the hour: given up
        (1, 3599, None),
    ],
)
def test_deliveries_are_given_up_after_the_hour(
    attempts: int, age_s: float, expected: float | None
) -> None:
    assert next_attempt_in(attempts, age_s, first_s=5, max_s=300, give_up_s=3600) == expected
