"""The HTTP connection of every service (Server, Manager, Dashboard): uvicorn's, with a deadline
for the request's headers.

uvicorn closes an idle keep-alive connection, but any byte cancels that timer, and a
connection that was just opened has none at all: a client that opens connections and sends
a request's headers a byte at a time (or never) keeps each one, and enough of them use up
the process's file descriptors. Here a connection gets `header_timeout_s` to send the
headers of each request, counted from when it opened or its last answer was sent; then it
is closed. Bodies are not timed (uploads may be long); once the headers are in, the
request's own handling decides.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("flamenco.http")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        next_has_headers = bool(self.pipeline)  # a queued request was parsed whole already
        super().on_response_complete()
        if not next_has_headers and not self.transport.is_closing():
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._cancel_header_deadline()
        self.header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_late(self) -> None:
        self.header_deadline = None
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.info(
                "closed the connection of %s: no request headers within %.0f s",
                client,
                self.header_timeout_s,
            )
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for this deadline."""
    if seconds <= 0:
        raise ValueError("The header timeout must be a positive number of seconds.")
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})
