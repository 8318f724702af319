"""Workers find their Manager by its DNS-SD announcement, across a real network link.

The Server and the Managers are on one network namespace, the Workers on another; the two
are joined by a veth pair the test makes and removes (netkit.two_networks). Loopback carries
no multicast, so every announcement the Workers see has crossed that link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from farmkit import TestFarm, wait_until
from flamenco import __version__
from netkit import TwoNetworks, two_networks

pytestmark = pytest.mark.blender

LOOK_S = "3"  # how long a Worker looks for announced Managers
# The TXT records of every Flamenco service announced, as a user's own zeroconf sees them.
BROWSE_TXT = """
import json, time
from zeroconf import ServiceBrowser, Zeroconf
zc = Zeroconf()
names = set()
browser = ServiceBrowser(zc, "_flamenco._tcp.local.", handlers=[lambda **kw: names.add(kw["name"])])
time.sleep(float(__import__("sys").argv[1]))
records = {}
for name in sorted(names):
    info = zc.get_service_info("_flamenco._tcp.local.", name, 3000)
    if info is not None:
        records[name] = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
browser.cancel()
zc.close()
print(json.dumps(records))
"""


def announced_txt(net: TwoNetworks, look_s: float = 3) -> dict[str, dict[str, str]]:
    """Every announced Flamenco service's TXT record, seen from the Workers' network."""
    done = subprocess.run(
        [*net.prefix(net.site), sys.executable, "-c", BROWSE_TXT, str(look_s)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def worker_once(farm: TestFarm, net: TwoNetworks, secret: str, *args: str) -> Any:
    """`flamenco worker --secret S [args]` on the Workers' network, to its end."""
    command = [sys.executable, "-m", "flamenco", "worker", "--secret", secret]
    return subprocess.run(
        [*net.prefix(net.site), *command, "--data-dir", str(farm.root / "one-off"), *args],
        env={
            **os.environ,
            "XDG_CONFIG_HOME": str(farm.config_home),
            "FLAMENCO_WORKER_DISCOVERY_TIMEOUT_S": LOOK_S,
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def workers_of(farm: TestFarm, site: str) -> list[str]:
    listed = json.loads(farm.cli("managers", "list", "--json").stdout)
    return [w["name"] for m in listed if m["name"] == site for w in m["workers"]]


def test_a_worker_given_only_the_secret_finds_the_manager_and_renders(
    farm: TestFarm, demo_scene: Path
) -> None:
    with two_networks() as net:
        farm.start_server()
        farm.start_manager("north", host=net.main_address)
        north = farm.managers["north"]

        # What anyone on the network sees: the site and the URL, never the join secret.
        txt = wait_until(lambda: announced_txt(net), 60, "the Manager's announcement")
        assert list(txt.values()) == [{"site": "north", "url": north.url, "version": __version__}]
        assert not any(north.secret in f"{k}={v}" for r in txt.values() for k, v in r.items())

        worker = farm.start_discovering_worker("remote-1", north.secret, net.prefix(net.site))
        wait_until(lambda: workers_of(farm, "north") == ["remote-1"], 120, "remote-1 joined")
        assert f"Found the site 'north' at {north.url}" in worker.output()
        assert f"Joining the site 'north' at {north.url}" in worker.output()

        done = farm.cli("submit", str(demo_scene), "--frames", "1-3", "--json")
        assert done.returncode == 0, done.stderr
        job = farm.wait_job(json.loads(done.stdout)["id"])
        assert job.status == "completed", farm.logs()
        assert {t.worker for t in farm.tasks(job.id)} == {"remote-1"}

        # Stopping the Manager withdraws the announcement (a goodbye, not a TTL running out).
        north.proc.stop()
        wait_until(lambda: announced_txt(net) == {}, 30, "the announcement withdrawn")
        farm.stop_all()


def test_with_two_sites_in_view_a_worker_needs_site_and_joins_that_one(farm: TestFarm) -> None:
    with two_networks() as net:
        farm.start_server()
        for site in ("north", "south"):
            farm.start_manager(site, host=net.main_address)
        # Listening on 127.0.0.1 only, this one announces nothing: no Worker could reach it.
        farm.start_manager("hidden")
        north, south = farm.managers["north"], farm.managers["south"]
        wait_until(
            lambda: {r["site"] for r in announced_txt(net).values()} == {"north", "south"},
            60,
            "both Managers announced",
        )
        hidden_log = farm.managers["hidden"].proc.output()
        assert "Manager hidden is not announced on the network: it listens on 127.0.0.1" in (
            hidden_log
        )

        refused = worker_once(farm, net, south.secret)
        assert refused.returncode == 1, refused.stderr
        assert "Traceback" not in refused.stderr
        assert (
            "Error: 2 Managers are in view; choose one with --site NAME:\n"
            f"  north  {north.url}\n"
            f"  south  {south.url}\n"
        ) in refused.stderr

        unknown = worker_once(farm, net, south.secret, "--site", "west")
        assert unknown.returncode == 1, unknown.stderr
        assert (
            "Error: No Manager of the site 'west' is in view; the sites seen are (pass one "
            "with --site NAME):\n"
            f"  north  {north.url}\n"
            f"  south  {south.url}\n"
        ) in unknown.stderr
        assert workers_of(farm, "north") == workers_of(farm, "south") == []

        worker = farm.start_discovering_worker(
            "remote-s",
            south.secret,
            net.prefix(net.site),
            ["--site", "south"],
        )
        wait_until(lambda: workers_of(farm, "south") == ["remote-s"], 120, "remote-s at south")
        assert workers_of(farm, "north") == []
        assert f"Joining the site 'south' at {south.url}" in worker.output()
        farm.stop_all()


def test_a_worker_that_finds_no_manager_says_how_to_name_one(farm: TestFarm) -> None:
    with two_networks() as net:
        lonely = worker_once(farm, net, "any-secret")
        assert lonely.returncode == 1, lonely.stderr
        assert (
            "Error: No Manager announced itself on this network within 3 s; if multicast is "
            "blocked here, pass --manager URL (e.g. --manager http://HOST:7777)."
        ) in lonely.stderr
        assert "Looking for a Manager announced on this network" in lonely.stderr


def test_with_none_announced_a_worker_joins_the_manager_of_its_own_machine(farm: TestFarm) -> None:
    """`flamenco manager` and `flamenco worker` on one machine, with the defaults: the Manager
    listens on 127.0.0.1 and announces nothing; the Worker finds it on the default port."""
    with two_networks() as net:
        farm.start_server(host="0.0.0.0")
        server_url = farm.server_url.replace("127.0.0.1", net.main_address)
        site = net.prefix(net.site)  # a machine of its own, where port 7777 is free
        farm.start_manager("solo", prefix=site, server_url=server_url, port=7777)
        worker = farm.start_discovering_worker("solo-1", farm.managers["solo"].secret, site)
        wait_until(lambda: workers_of(farm, "solo") == ["solo-1"], 120, "solo-1 joined")
        assert (
            "None announced; a Manager answers on this machine at http://127.0.0.1:7777."
            in worker.output()
        )
        farm.stop_all()


def test_a_manager_on_every_interface_announces_its_primary_address(farm: TestFarm) -> None:
    with two_networks(main_default_route=True) as net:
        farm.start_server()
        port = farm.start_manager("wide", host="0.0.0.0").rsplit(":", 1)[1]
        farm.start_manager("quiet", host="0.0.0.0", env={"FLAMENCO_MANAGER_ANNOUNCE": "false"})
        txt = wait_until(lambda: announced_txt(net), 60, "the Manager's announcement")
        assert [(r["site"], r["url"]) for r in txt.values()] == [
            ("wide", f"http://{net.main_address}:{port}")
        ]
        quiet_log = farm.managers["quiet"].proc.output()
        assert "Manager quiet is not announced on the network: announcing is turned off" in (
            quiet_log
        )
        farm.stop_all()
