"""The HTTP connection of every service (Server, Manager, Dashboard): uvicorn's, with a deadline
for the request's headers.

uvicorn closes an idle keep-alive connection, but any byte cancels that timer, and a
connection that was just opened has none at all: a client that opens connections and sends
a request's headers a byte at a time (or never) keeps each one, and enough of them use up
the process's file descriptors. Here a connection gets `header_timeout_s` to send the
headers of each request, counted from when it opened or its last answer was sent; then it
is closed. Bodies are not timed (uploads may be long); once the headers are in, the
request's own handling decides.

It also writes each answer in one piece: uvicorn writes an answer's head and its body with
two calls, each a system call and a packet of its own (`CoalescingTransport`).
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
        coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]
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


# Written at once rather than at the end of the turn: a streamed answer's big chunks gain
# nothing from waiting, and the transport's flow control (pause_writing) must see them.
COALESCE_BYTES = 64 * 1024


class CoalescingTransport:
    """A connection's transport whose writes of one turn of the event loop go out as one.

    An answer's head and body (written back to back, without a turn in between) become one
    system call and one packet instead of two. The writes wait at most until the end of the
    loop's current turn, and not at all once they add up to COALESCE_BYTES; closing sends
    what waits first, aborting drops it. Everything else is the transport's own.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._waiting: list[bytes] = []
        self._waiting_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._waiting:
            self._loop.call_soon(self._send_waiting)
        self._waiting.append(bytes(data))
        self._waiting_bytes += len(data)
        if self._waiting_bytes >= COALESCE_BYTES:
            self._send_waiting()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _send_waiting(self) -> None:
        if not self._waiting:
            return
        waiting, self._waiting, self._waiting_bytes = self._waiting, [], 0
        if not self._transport.is_closing():
            self._transport.write(waiting[0] if len(waiting) == 1 else b"".join(waiting))

    def is_closing(self) -> bool:  # asked after every answer: not through __getattr__
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._waiting_bytes

    def write_eof(self) -> None:
        self._send_waiting()
        self._transport.write_eof()

    def close(self) -> None:
        self._send_waiting()
        self._transport.close()

    def abort(self) -> None:
        self._waiting, self._waiting_bytes = [], 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to give uvicorn (`Config(http=...)`) for this deadline."""
    if seconds <= 0:
        raise ValueError("The header timeout must be a positive number of seconds.")
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})
