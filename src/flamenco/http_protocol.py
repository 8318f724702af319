"""The HTTP connection of every service (Server, Manager, Dashboard): uvicorn's, with a deadline
for the request's headers.

uvicorn closes an idle keep-alive connection, but any byte cancels that timer, and a
connection that was just opened has none at all: a client that opens connections and sends
a request's headers a byte at a time (or never) keeps each one, and enough of them use up
the process's file descriptors. Here a connection gets `header_timeout_s` to send the
headers of each request, counted from when it opened or its last answer was sent; then it
is closed (within a quarter of that more: the deadlines are looked at, not timed one by
one). Bodies are not timed (uploads may be long); once the headers are in, the request's
own handling decides.

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
        # When the headers of the next request are due (the loop's clock), or None while a
        # request is being handled: a time to compare, not a timer per request, which cost a
        # busy Manager 3 % of its CPU (`HeaderDeadlines` looks a few times per deadline).
        self.headers_due: float | None = None
        self.deadlines: HeaderDeadlines | None = None  # those of its loop, from connection_made

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)  # type: ignore[arg-type]
        self.deadlines = HeaderDeadlines.of(self.loop, self.header_timeout_s)
        self.deadlines.watch(self)
        self._await_headers()

    def on_headers_complete(self) -> None:
        self.headers_due = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        next_has_headers = bool(self.pipeline)  # a queued request was parsed whole already
        super().on_response_complete()
        if not next_has_headers and not self.transport.is_closing():
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self.headers_due = None
        if self.deadlines is not None:
            self.deadlines.forget(self)
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self.headers_due = self.loop.time() + self.header_timeout_s

    def headers_late(self) -> None:
        self.headers_due = None
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.info(
                "closed the connection of %s: no request headers within %.0f s",
                client,
                self.header_timeout_s,
            )
            self.transport.close()


class HeaderDeadlines:
    """The open connections of one event loop, looked at every quarter of the header timeout:
    a connection whose headers are overdue is closed, between one and one and a quarter
    timeouts after its deadline started."""

    _of_loop: dict[tuple[asyncio.AbstractEventLoop, float], HeaderDeadlines] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.key = (loop, timeout_s)
        self.loop = loop
        self.every_s = timeout_s / 4
        self.connections: set[HeaderTimeoutProtocol] = set()
        self.timer = loop.call_later(self.every_s, self._look)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, timeout_s: float) -> HeaderDeadlines:
        deadlines = cls._of_loop.get((loop, timeout_s))
        if deadlines is None:
            deadlines = cls._of_loop[loop, timeout_s] = cls(loop, timeout_s)
        return deadlines

    def watch(self, connection: HeaderTimeoutProtocol) -> None:
        self.connections.add(connection)

    def forget(self, connection: HeaderTimeoutProtocol) -> None:
        self.connections.discard(connection)
        if not self.connections:  # made anew by the next connection: no loop is kept
            self.timer.cancel()
            self._of_loop.pop(self.key, None)

    def _look(self) -> None:
        now = self.loop.time()
        late = [c for c in self.connections if c.headers_due is not None and c.headers_due <= now]
        for connection in late:
            connection.headers_late()
        if self._of_loop.get(self.key) is self:
            self.timer = self.loop.call_later(self.every_s, self._look)


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
