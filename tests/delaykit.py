"""A TCP relay that delays every byte a fixed time each way: round trips for a test link on a
kernel without `tc netem` (no sch_netem, no modules to load).

`delay_relay` runs it as its own process in a namespace: it listens on an address there and
passes each connection on to a target, handing every chunk it reads to the other side `delay`
seconds after it read it, in order. Reading stops while `QUEUE_LIMIT` bytes wait in one
direction, so a receiver that stops reading (a cut link) stops the sender too, as a queue on a
real link would. A reset on either side resets the other; an end of stream is passed on, late
by the same delay. What it cannot delay is the TCP handshake: the kernel completes it before
the relay accepts, so a new connection costs no round trip.

Run as a script (`python delaykit.py LISTEN_HOST TARGET_HOST TARGET_PORT DELAY_S`) it prints
`listening on PORT` once it accepts connections, then relays until it is terminated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

READ_SIZE = 64 * 1024
# Bytes waiting in one direction before the relay stops reading: at 40 ms this lets 50 MB/s
# through (4x a 100 Mbit/s link), and a stalled receiver holds back at most this much.
QUEUE_LIMIT = 2 * 1024 * 1024
START_TIMEOUT_S = 30


class DelayLine:
    """Chunks in the order they were read, each with the time it is due on the other side."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.items: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.changed = asyncio.Condition()

    async def put(self, data: bytes) -> None:
        due = asyncio.get_running_loop().time() + self.delay  # it was read just now
        async with self.changed:
            await self.changed.wait_for(lambda: self.queued < QUEUE_LIMIT)
            self.items.append((due, data))
            self.queued += len(data)
            self.changed.notify_all()

    async def get(self) -> bytes:
        """The next chunk once it is due (b"" is the end of the stream)."""
        async with self.changed:
            await self.changed.wait_for(lambda: bool(self.items))
            due, data = self.items.popleft()
            self.queued -= len(data)
            self.changed.notify_all()
        loop = asyncio.get_running_loop()
        while (left := due - loop.time()) > 0:  # never early: the test asserts the round trip
            await asyncio.sleep(left)
        return data


async def one_way(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    line = DelayLine(delay)

    async def take() -> None:
        while data := await reader.read(READ_SIZE):
            await line.put(data)
        await line.put(b"")

    async def give() -> None:
        while data := await line.get():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async with asyncio.TaskGroup() as group:
        group.create_task(take())
        group.create_task(give())


async def relay(
    near_reader: asyncio.StreamReader,
    near_writer: asyncio.StreamWriter,
    target: tuple[str, int],
    delay: float,
) -> None:
    far_writer: asyncio.StreamWriter | None = None
    try:
        far_reader, far_writer = await asyncio.open_connection(*target)
        async with asyncio.TaskGroup() as group:
            group.create_task(one_way(near_reader, far_writer, delay))
            group.create_task(one_way(far_reader, near_writer, delay))
    except* (OSError, asyncio.IncompleteReadError):
        # One side reset or failed: the other side learns it by a reset, not a clean end.
        near_writer.transport.abort()
        if far_writer is not None:
            far_writer.transport.abort()
    finally:
        near_writer.close()
        if far_writer is not None:
            far_writer.close()


async def serve(listen_host: str, target: tuple[str, int], delay: float) -> None:
    server = await asyncio.start_server(
        lambda reader, writer: relay(reader, writer, target, delay), listen_host, 0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def delay_relay(
    prefix: list[str], listen_host: str, target: tuple[str, int], delay: float
) -> Iterator[int]:
    """The relay running under `prefix` (e.g. `ip netns exec NS`); yields the port it listens
    on at `listen_host`; stopped whatever happens."""
    command = [*prefix, sys.executable, str(Path(__file__)), listen_host, *map(str, target)]
    proc = subprocess.Popen([*command, str(delay)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if not select.select([proc.stdout], [], [], START_TIMEOUT_S)[0]:
            raise AssertionError(f"the delaying relay did not start in {START_TIMEOUT_S} s")
        first = proc.stdout.readline()  # the relay's first line, or "" if it died
        if not first.startswith("listening on "):
            raise AssertionError(f"the delaying relay did not start: {first!r}")
        yield int(first.split()[-1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    host, target_host, target_port, delay_s = sys.argv[1:5]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, (target_host, int(target_port)), float(delay_s)))
