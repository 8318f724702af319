"""Transfers that resume, through a TCP relay that drops the connection in the middle: the
CLI's upload (SyncApi), the add-on's upload (its stdlib client) and a Manager's or Worker's
download (AsyncApi) each finish after two cuts, and the relay counts every byte that really
crossed, so a transfer that started over instead of resuming fails the test. A real Server;
the relay is real sockets (a link that drops, on loopback), nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmkit import TestFarm
from flamenco.addon.render_flamenco.api import Server as AddonServer
from flamenco.blobs import BlobStore
from flamenco.client import AsyncApi, SyncApi

SIZE = 24 * 1024 * 1024
CUTS = (SIZE // 4, SIZE // 2)  # after this many bytes through the relay, in that direction
OVERHEAD = 64 * 1024  # request and answer headers, the offset questions: well under this


class CuttingRelay:
    """Forwards 127.0.0.1:port to the Server; once `cut_at[0]` bytes went through in the
    watched direction (up: to the Server; down: from it), it drops that connection (RST)."""

    def __init__(self, target: tuple[str, int], direction: str, cut_at: tuple[int, ...]) -> None:
        self.target, self.direction = target, direction
        self.cut_at = list(cut_at)
        self.up = self.down = 0  # bytes relayed each way, all connections together
        self.cuts = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.conns += [client, server]
            for src, dst, way in ((client, server, "up"), (server, client, "down")):
                threading.Thread(target=self._pump, args=(src, dst, way), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while data := src.recv(65536):
                with self.lock:
                    total = getattr(self, way)
                    if (
                        way == self.direction
                        and self.cut_at
                        and total + len(data) >= self.cut_at[0]
                    ):
                        self.cut_at.pop(0)
                        self.cuts += 1
                        for s in (src, dst):  # dropped: what was in flight is lost
                            with contextlib.suppress(OSError):
                                s.shutdown(socket.SHUT_RDWR)  # wakes the other direction
                            s.close()
                        return
                    setattr(self, way, total + len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()
        for s in self.conns:
            s.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    with TestFarm(tmp_path_factory.mktemp("transfer-cuts") / "farm") as farm:
        farm.start_server()
        yield farm


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, str]:
    data = os.urandom(SIZE)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def server_address(srv: TestFarm) -> tuple[str, int]:
    host, port = srv.server_url.removeprefix("http://").split(":")
    return host, int(port)


def assert_stored(srv: TestFarm, sha: str) -> None:
    stored = srv.root / "server" / "blobs" / sha[:2] / sha
    assert stored.stat().st_size == SIZE
    assert list((srv.root / "server" / "blobs" / "tmp").glob(f"partial-{sha}*")) == []


def test_the_cli_upload_resumes_after_two_cuts(srv: TestFarm, big: tuple[Path, str]) -> None:
    path, sha = big
    relay = CuttingRelay(server_address(srv), "up", CUTS)
    try:
        api = SyncApi(relay.url, srv.token)
        api.upload_blob(path, sha)
    finally:
        relay.close()
    assert relay.cuts == 2
    assert api.transfers.resumes == 2
    # What reached the Server: the file once, not a quarter and a half of it again.
    assert relay.up <= SIZE + OVERHEAD, relay.up
    assert_stored(srv, sha)


def test_the_addon_upload_resumes_after_two_cuts(srv: TestFarm, big: tuple[Path, str]) -> None:
    path, sha = big
    relay = CuttingRelay(server_address(srv), "up", CUTS)
    try:
        AddonServer(relay.url, srv.token).upload_blob(path, sha)
    finally:
        relay.close()
    assert relay.cuts == 2
    assert relay.up <= SIZE + OVERHEAD, relay.up
    assert_stored(srv, sha)


def test_a_download_resumes_after_two_cuts(
    srv: TestFarm, big: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = big
    SyncApi(srv.server_url, srv.token).upload_blob(path, sha)
    relay = CuttingRelay(server_address(srv), "down", CUTS)
    store = BlobStore(tmp_path / "cache")

    async def fetch() -> AsyncApi:
        api = AsyncApi(relay.url, srv.token)
        try:
            await api.download_blob(sha, store)
        finally:
            await api.close()
        return api

    try:
        api = asyncio.run(fetch())
    finally:
        relay.close()
    assert relay.cuts == 2
    assert api.transfers.resumes == 2
    assert api.transfers.received == SIZE  # every byte that arrived was kept
    assert relay.down <= SIZE + OVERHEAD, relay.down
    assert store.path(sha).read_bytes() == path.read_bytes()
