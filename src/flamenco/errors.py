"""Errors that cross a component boundary: each carries its HTTP status and one sentence."""

from __future__ import annotations


class FlamencoError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(FlamencoError):
    status_code = 400


class Unauthorized(FlamencoError):
    status_code = 401


class Forbidden(FlamencoError):
    status_code = 403


class NotFound(FlamencoError):
    status_code = 404


class Conflict(FlamencoError):
    status_code = 409


class PayloadTooLarge(FlamencoError):
    status_code = 413


class UnsupportedMedia(FlamencoError):
    status_code = 415


class Unprocessable(FlamencoError):
    status_code = 422


class TooManyRequests(FlamencoError):
    """Refused for now; the answer's Retry-After says when to try again."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(FlamencoError):
    status_code = 503
