"""DNS-SD over multicast DNS (python-zeroconf): Managers announce themselves, Workers look.

A Manager announces a `_flamenco._tcp` service whose TXT record carries its site name and
URL (core.discovery.txt_record), on the interface it is bound to, or on every interface when
bound to a wildcard address. One bound to a loopback address announces nothing: no other
machine could reach it, and loopback carries no multicast. Announcing runs on the Manager's
own event loop (AsyncZeroconf) in the background, so a slow or failing network never holds up
the Manager; it says goodbye when the Manager stops. Workers browse for a few seconds and
pick with core.discovery.choose_manager. IPv4 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable

import httpx
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceStateChange,
    Zeroconf,
    get_all_addresses,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from flamenco import __version__
from flamenco.config import DEFAULT_MANAGER_PORT, ManagerSettings, WorkerSettings
from flamenco.core.discovery import (
    SERVICE_TYPE,
    Announcement,
    cannot_look,
    choose_manager,
    found_line,
    read_txt,
    txt_record,
)
from flamenco.netaddr import (
    is_loopback,
    is_wildcard,
    only_this_machine,
    public_host,
    service_url,
)

log = logging.getLogger("flamenco.discovery")
MAX_INSTANCE_BYTES = 63  # a DNS label
RESOLVE_TIMEOUT_MS = 3000
# Where a Worker looks when no Manager is announced: a Manager on this machine, which does
# not announce itself when it listens on 127.0.0.1 (the default).
LOCAL_MANAGER_URL = f"http://127.0.0.1:{DEFAULT_MANAGER_PORT}"


def manager_url(settings: ManagerSettings) -> str:
    """The URL a Manager's Workers reach it at: the one it prints and announces."""
    scheme = "https" if settings.tls_cert else "http"  # tls.service_tls checked the pair
    return service_url(scheme, _announced_host(settings), settings.port)


def _announced_host(settings: ManagerSettings) -> str:
    return public_host(settings.host, settings.advertise)


def why_not_announced(settings: ManagerSettings) -> str | None:
    """Why this Manager does not announce itself; None when it does."""
    if not settings.announce:
        return "announcing is turned off (--no-announce)"
    if only_this_machine(settings.host):
        return f"it listens on {settings.host}, which only this machine can reach"
    if not is_wildcard(settings.host) and not _is_ipv4(settings.host):
        return f"it listens on {settings.host}, and announcements go out on IPv4 only"
    return None


def _is_ipv4(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip()).version == 4
    except ValueError:
        return False


def _instance_name(site: str) -> str:
    """The service instance: the site's name, shortened to one DNS label (the TXT record
    carries it whole); dots would read as label separators."""
    label = site.replace(".", "-").encode()[:MAX_INSTANCE_BYTES].decode("utf-8", "ignore")
    return f"{label}.{SERVICE_TYPE}"


class ManagerAnnouncer:
    """A Manager's announcement: `start` in its event loop, `stop` before it exits."""

    def __init__(self, settings: ManagerSettings) -> None:
        self.settings = settings
        self.url = manager_url(settings)
        self._zeroconf: AsyncZeroconf | None = None
        self._registering: asyncio.Task[None] | None = None
        self.announced = asyncio.Event()

    async def start(self) -> None:
        why_not = why_not_announced(self.settings)
        if why_not:
            log.info("Manager %s is not announced on the network: %s", self.settings.name, why_not)
            return
        self._registering = asyncio.create_task(self._register())

    async def _register(self) -> None:
        host = self.settings.host.strip()
        interfaces = InterfaceChoice.All if is_wildcard(host) else [host]
        # The address records (a Worker's resolver wants at least one): the announced host
        # when it is an address, and the bound one, or every non-loopback one for a wildcard.
        candidates = {_announced_host(self.settings), host}
        if is_wildcard(host):
            candidates.update(get_all_addresses())
        addresses = [
            socket.inet_aton(a)
            for a in sorted(candidates)
            if _is_ipv4(a) and not is_wildcard(a) and not is_loopback(a)
        ]
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            _instance_name(self.settings.name),
            port=self.settings.port,
            properties=txt_record(self.settings.name, self.url, __version__),
            addresses=addresses,
        )
        try:
            self._zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            await self._zeroconf.async_register_service(info, allow_name_change=True)
        except Exception as exc:  # the Manager works without it; Workers can use --manager
            log.warning(
                "Manager %s could not announce itself on the network (%s); Workers need "
                "--manager %s",
                self.settings.name,
                exc,
                self.url,
            )
            return
        self.announced.set()
        log.info(
            "Manager %s announced on the network as %s (%s)",
            self.settings.name,
            info.name,
            self.url,
        )

    async def stop(self) -> None:
        if self._registering is not None:
            if not self._registering.done():
                self._registering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._registering
        if self._zeroconf is not None:
            with contextlib.suppress(Exception):  # goodbyes are a courtesy; stopping must go on
                await self._zeroconf.async_unregister_all_services()
            await self._zeroconf.async_close()
            self._zeroconf = None


async def browse(
    timeout_s: float,
    site: str = "",
    on_found: Callable[[Announcement], None] | None = None,
) -> list[Announcement]:
    """The Managers announced on this machine's networks within `timeout_s`; with `site`,
    it stops as soon as one of that site is seen."""
    zeroconf = AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
    seen: dict[str, Announcement] = {}
    resolving: set[asyncio.Task[None]] = set()
    wanted = asyncio.Event()

    async def resolve(name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zeroconf.zeroconf, RESOLVE_TIMEOUT_MS):
            return
        announcement = read_txt(info.properties)
        if announcement is None or seen.get(name) == announcement:
            return
        seen[name] = announcement
        if on_found:
            on_found(announcement)
        if site and announcement.site == site:
            wanted.set()

    def changed(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            seen.pop(name, None)
            return
        task = asyncio.get_running_loop().create_task(resolve(name))
        resolving.add(task)
        task.add_done_callback(resolving.discard)

    browser = AsyncServiceBrowser(zeroconf.zeroconf, [SERVICE_TYPE], handlers=[changed])
    started = time.monotonic()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wanted.wait(), timeout_s)
        if resolving and not wanted.is_set():  # answers that arrived at the very end
            grace = max(0.0, RESOLVE_TIMEOUT_MS / 1000 - (time.monotonic() - started))
            await asyncio.wait(resolving, timeout=min(grace, 1.0))
    finally:
        for task in resolving:
            task.cancel()
        await browser.async_cancel()
        await zeroconf.async_close()
    return list(seen.values())


def find_manager(settings: WorkerSettings, say: Callable[[str], None]) -> str:
    """The URL of the Manager a Worker without --manager joins: the one announced on the
    network (of `settings.site` if given), else a Manager answering on this machine's default
    port. Raises core.discovery.NoManagerChosen with what to pass instead; `say` tells the
    user what it is doing."""
    which = f"of the site '{settings.site}' " if settings.site else ""
    say(
        f"Looking for a Manager {which}announced on this network "
        f"(DNS-SD, up to {settings.discovery_timeout_s:g} s)..."
    )
    try:
        found = asyncio.run(
            browse(settings.discovery_timeout_s, settings.site, lambda a: say(found_line(a)))
        )
    except OSError as exc:  # e.g. no interface that takes multicast
        raise cannot_look(exc.strerror or str(exc)) from None
    if not found and not settings.site and _answers(LOCAL_MANAGER_URL):
        say(f"None announced; a Manager answers on this machine at {LOCAL_MANAGER_URL}.")
        return LOCAL_MANAGER_URL
    chosen = choose_manager(found, settings.site, settings.discovery_timeout_s)
    say(f"Joining the site '{chosen.site}' at {chosen.url}")
    return chosen.url


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/version", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
