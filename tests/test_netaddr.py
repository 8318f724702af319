"""Which address other machines are told, and which one the farm's own processes use."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from flamenco.cli.console import err
from flamenco.cli.up import FarmSecrets, FarmTrust, _print_welcome, farm_addresses
from flamenco.config import UpSettings
from flamenco.netaddr import (
    first_public,
    local_host,
    only_this_machine,
    primary_address,
    public_host,
    service_url,
)

PRIMARY = "192.168.7.20"  # stands in for this machine's default-route address


@pytest.mark.parametrize(
    ("bind_host", "advertise", "expected"),
    [
        ("127.0.0.1", "", "127.0.0.1"),  # only this machine, as before
        ("0.0.0.0", "", PRIMARY),
        ("::", "", PRIMARY),
        ("", "", PRIMARY),
        ("0.0.0.0", "farm.studio.lan", "farm.studio.lan"),
        ("127.0.0.1", "farm.studio.lan", "farm.studio.lan"),  # e.g. behind a proxy
        ("10.1.2.3", "", "10.1.2.3"),  # one interface: its own address
        ("10.1.2.3", " render-01 ", "render-01"),
    ],
)
def test_public_host(bind_host: str, advertise: str, expected: str) -> None:
    assert public_host(bind_host, advertise, primary=lambda: PRIMARY) == expected


@pytest.mark.parametrize(
    ("bind_host", "expected"),
    [("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "::1"), ("10.1.2.3", "10.1.2.3")],
)
def test_local_host(bind_host: str, expected: str) -> None:
    assert local_host(bind_host) == expected


@pytest.mark.parametrize(
    ("bind_host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("farm.studio.lan", False),
    ],
)
def test_only_this_machine(bind_host: str, expected: bool) -> None:
    assert only_this_machine(bind_host) is expected


@pytest.mark.parametrize(
    ("scheme", "host", "port", "expected"),
    [
        ("http", "10.1.2.3", 7777, "http://10.1.2.3:7777"),
        ("https", "farm.studio.lan", 9999, "https://farm.studio.lan:9999"),
        ("http", "::1", 8888, "http://[::1]:8888"),
        ("http", "[fd00::5]", 8888, "http://[fd00::5]:8888"),
    ],
)
def test_service_url(scheme: str, host: str, port: int, expected: str) -> None:
    assert service_url(scheme, host, port) == expected


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        (["127.0.1.1", "10.0.0.4"], "10.0.0.4"),
        (["::1", "fe80::1%eth0", "fd00::7"], "fd00::7"),
        (["127.0.0.1"], ""),
        ([], ""),
    ],
)
def test_first_public(addresses: list[str], expected: str) -> None:
    assert first_public(addresses) == expected


def test_primary_address_is_one_other_machines_can_use() -> None:
    found = primary_address()
    try:
        address = ipaddress.ip_address(found)
    except ValueError:
        assert found == socket.gethostname()  # no route and no address: the name, at least
    else:
        assert not address.is_loopback and not address.is_unspecified


def test_farm_addresses_print_the_public_host_and_connect_locally() -> None:
    where = farm_addresses(UpSettings(host="0.0.0.0", advertise="farm.lan"), port_offset=10)
    assert where.public_host == "farm.lan"
    assert where.server_url == "http://127.0.0.1:10009"
    assert where.public_server_url == "http://farm.lan:10009"
    assert where.public_manager_url == "http://farm.lan:7787"
    assert where.public_dashboard_url == "http://farm.lan:8898"
    assert not where.only_this_machine
    here = farm_addresses(UpSettings(), port_offset=0)
    assert here.public_manager_url == here.manager_url == "http://127.0.0.1:7777"
    assert here.only_this_machine


@pytest.mark.parametrize(
    ("reach", "workers_line", "cannot_join"),
    [
        (UpSettings(), "Workers on this machine: ", True),
        (UpSettings(host="0.0.0.0", advertise="farm.lan"), "Workers on other machines: ", False),
    ],
)
def test_what_up_prints_says_whether_other_machines_can_join(
    tmp_path: Path, reach: UpSettings, workers_line: str, cannot_join: bool
) -> None:
    where = farm_addresses(reach, port_offset=0)
    farm = FarmSecrets("password", "token", "manager-token", "worker-secret")
    with err.capture() as printed:
        _print_welcome(where, farm, tmp_path / "client.toml", tmp_path, FarmTrust())
    lines = printed.get().splitlines()
    (command,) = [line for line in lines if line.startswith(workers_line)]
    assert command.endswith(f"flamenco worker --manager {where.public_manager_url}")
    hint = "Other machines cannot join: the farm listens on 127.0.0.1 only; start it with "
    assert any(line.startswith(hint + "--host 0.0.0.0") for line in lines) is cannot_join
