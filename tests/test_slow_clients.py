"""A client that opens a connection and never finishes its request's headers is cut off by
the Server, the Manager and the Dashboard alike (header_timeout_s, 1 s here instead of 10)."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from farmkit import TestFarm

TIMEOUT_S = 1.0


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def seconds_until_closed(sock: socket.socket, drip: bytes = b"", limit_s: float = 30.0) -> float:
    """How long the service keeps the connection open while we send `drip` a byte at a time
    (or nothing), reading whatever it answers."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < limit_s:
        if drip:
            try:
                sock.send(drip[:1])
            except OSError:  # reset: it is closed
                return time.monotonic() - start
            drip = drip[1:]
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    raise AssertionError(f"the connection was still open after {limit_s:.0f} s")


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    with TestFarm(tmp_path_factory.mktemp("slow-clients") / "farm") as test_farm:
        yield test_farm


@pytest.fixture(scope="module")
def services(farm: TestFarm) -> dict[str, str]:
    """Server, Manager and Dashboard, each closing header-less connections after 1 s."""
    timeout = str(TIMEOUT_S)
    farm.start_server(env={"FLAMENCO_SERVER_HEADER_TIMEOUT_S": timeout})
    manager = farm.start_manager(env={"FLAMENCO_MANAGER_HEADER_TIMEOUT_S": timeout})
    dashboard, _ = farm.start_dashboard(env={"FLAMENCO_DASHBOARD_HEADER_TIMEOUT_S": timeout})
    return {"server": farm.server_url, "manager": manager, "dashboard": dashboard}


@pytest.mark.parametrize("component", ["server", "manager", "dashboard"])
def test_a_connection_without_headers_is_closed(component: str, services: dict[str, str]) -> None:
    url = services[component]
    silent = connect(url)
    silent.send(b"GET /api/v1/version HT")  # part of a request line, then nothing
    assert TIMEOUT_S * 0.8 < seconds_until_closed(silent) < TIMEOUT_S + 4

    # Dripping a byte every 0.2 s does not keep it open either.
    dripping = connect(url)
    headers = b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    assert seconds_until_closed(dripping, drip=headers) < TIMEOUT_S + 4

    # Nothing sent at all: the same.
    assert seconds_until_closed(connect(url)) < TIMEOUT_S + 4

    # A client that sends its request whole is answered, as always, on the same connection
    # after a pause shorter than the deadline.
    parts = urlsplit(url)
    ok = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    for number in range(2):
        ok.request("GET", "/api/v1/version")
        assert ok.getresponse().read().startswith(b'{"name":'), f"request {number}"
        if number == 0:
            first = ok.sock
            time.sleep(TIMEOUT_S / 2)  # the pause under test, within the deadline
    assert ok.sock is first  # the same connection
    ok.close()


def test_a_request_that_takes_longer_than_the_deadline_is_not_cut(
    farm: TestFarm, services: dict[str, str]
) -> None:
    """The deadline is for headers only: a held answer (the event stream) goes on."""
    sock = connect(services["server"])
    sock.sendall(
        b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {farm.token}\r\n\r\n".encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    held_until = time.monotonic() + TIMEOUT_S * 3
    while (left := held_until - time.monotonic()) > 0:  # three deadlines later: still open
        sock.settimeout(left)
        try:
            assert sock.recv(4096) != b"", "the Server closed a connection it was answering"
        except TimeoutError:
            break
    sock.close()
