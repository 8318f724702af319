"""Network namespaces for tests: sites of the farm on separate networks joined by a veth pair.

Everything stays inside namespaces the test makes: the Server's network and a site's
network, each with its own loopback, joined by one veth link the test can cut.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"`ip {' '.join(args)}` failed (root and iproute2 are needed): {done.stderr.strip()}"
        )


def _setns(fd: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


@dataclass
class TwoNetworks:
    main: str  # namespace of the Server's network
    site: str  # namespace of the remote site
    main_address: str
    site_link: str  # the site's end of the veth pair

    def prefix(self, namespace: str) -> list[str]:
        return ["ip", "netns", "exec", namespace]

    def cut(self) -> None:
        _ip("netns", "exec", self.site, "ip", "link", "set", self.site_link, "down")

    def restore(self) -> None:
        _ip("netns", "exec", self.site, "ip", "link", "set", self.site_link, "up")


@contextlib.contextmanager
def two_networks(main_default_route: bool = False) -> Iterator[TwoNetworks]:
    """Make both namespaces and the link; the calling thread moves into the main one.

    `main_default_route`: the main network's default route leads over the link, as a
    machine's does over its network card, so that the link's address is its primary one.
    """
    tag = secrets.token_hex(3)
    main, site = f"fl-main-{tag}", f"fl-site-{tag}"
    main_end, site_end = f"flm{tag}", f"fls{tag}"
    subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        for namespace in (main, site):
            _ip("netns", "add", namespace)
            _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        _ip("link", "add", main_end, "type", "veth", "peer", "name", site_end)
        for end, namespace, address in ((main_end, main, 1), (site_end, site, 2)):
            _ip("link", "set", end, "netns", namespace)
            _ip(
                "netns",
                "exec",
                namespace,
                "ip",
                "addr",
                "add",
                f"{subnet}.{address}/30",
                "dev",
                end,
            )
            _ip("netns", "exec", namespace, "ip", "link", "set", end, "up")
        if main_default_route:
            _ip("netns", "exec", main, "ip", "route", "add", "default", "via", f"{subnet}.2")
        namespace_fd = os.open(f"/run/netns/{main}", os.O_RDONLY)
        try:
            _setns(namespace_fd)
        finally:
            os.close(namespace_fd)
        yield TwoNetworks(main, site, f"{subnet}.1", site_end)
    finally:
        _setns(original)
        os.close(original)
        for namespace in (main, site):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
