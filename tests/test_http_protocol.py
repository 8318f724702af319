"""The farm's HTTP connections write each answer in one piece (http_protocol.CoalescingTransport):
the head and body of an answer go out in one write, big streamed answers at once, and a
connection that closes sends what waits first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from flamenco.http_protocol import COALESCE_BYTES, CoalescingTransport, header_timeout_protocol


class RecordingTransport:
    """Stands in for the socket's transport: records each write it gets."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1234)}.get(name, default)


def coalescing() -> tuple[CoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return CoalescingTransport(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


def test_writes_of_one_turn_go_out_as_one() -> None:
    async def scenario() -> None:
        transport, real = coalescing()
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert real.writes == []
        assert transport.get_write_buffer_size() == 40
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        assert transport.get_write_buffer_size() == 0
        transport.write(b"next")  # a later turn: a write of its own
        await asyncio.sleep(0)
        assert real.writes[1:] == [b"next"]

    asyncio.run(scenario())


def test_big_writes_go_at_once_and_closing_sends_what_waits() -> None:
    async def scenario() -> None:
        transport, real = coalescing()
        transport.write(b"head")
        transport.write(b"x" * COALESCE_BYTES)
        assert real.writes == [b"head" + b"x" * COALESCE_BYTES]
        transport.write(b"last")
        transport.close()
        assert real.writes[1:] == [b"last"] and real.closed
        await asyncio.sleep(0)  # the turn's end finds nothing left to send
        assert len(real.writes) == 2
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1234)  # the real one's

    asyncio.run(scenario())


def test_aborting_drops_what_waits() -> None:
    async def scenario() -> None:
        transport, real = coalescing()
        transport.write(b"never")
        transport.abort()
        await asyncio.sleep(0)
        assert real.writes == [] and real.aborted

    asyncio.run(scenario())


BIG = 3 * COALESCE_BYTES + 17


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A JSON answer, or (at /big) one streamed in pieces, some of them big."""
    assert scope["type"] == "http"
    if scope["path"] == "/big":
        headers = [(b"content-length", str(BIG).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for piece in (b"a" * 17, b"b" * COALESCE_BYTES, b"c" * (2 * COALESCE_BYTES)):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=header_timeout_protocol(10), log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def test_answers_arrive_whole_through_uvicorn() -> None:
    async def scenario() -> None:
        async with served() as url, httpx.AsyncClient(base_url=url) as client:
            for _ in range(3):  # one kept-alive connection, answer after answer
                answer = await client.get("/")
                assert answer.json() == {"ok": True}
            big = await client.get("/big")
            assert big.content == b"a" * 17 + b"b" * COALESCE_BYTES + b"c" * (2 * COALESCE_BYTES)
            closing = await client.get("/", headers={"Connection": "close"})
            assert closing.json() == {"ok": True}

    asyncio.run(scenario())
