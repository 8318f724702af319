"""Errors that cross a component boundary: each carries its HTTP status and one sentence."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


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


class RangeNotSatisfiable(FlamencoError):
    """A byte range that this file cannot give or take; the answer names the file's size."""

    status_code = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class Unavailable(FlamencoError):
    status_code = 503


class ServiceFailed(FlamencoError):
    status_code = 500


class InsufficientStorage(FlamencoError):
    status_code = 507


class SchemaError(FlamencoError):
    """A database or store this code cannot use: newer than the code, or its upgrade failed."""

    status_code = 500


# A name the file system will not take: the caller chose it.
NAME_ERRNOS = (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ)
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn an OSError while writing `what` ("Frame 3 of job …") into an error with a sentence:
    a name the file system refuses is the caller's (422), a full disk the service's (507),
    anything else too (500). No traceback reaches the caller."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        if exc.errno in NAME_ERRNOS:
            raise Unprocessable(
                f"{what} cannot be written: the file system refuses its name ({reason})."
            ) from exc
        if exc.errno in FULL_ERRNOS:
            raise InsufficientStorage(
                f"{what} cannot be written: the service's disk is full ({reason})."
            ) from exc
        raise ServiceFailed(f"{what} cannot be written ({reason}).") from exc
