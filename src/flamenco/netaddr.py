"""Which address other machines reach a service at, and which one this machine uses for itself.

A service binds to an interface (`--host`); what it tells people and Workers is another
matter: a wildcard bind (0.0.0.0) is no address to connect to, and 127.0.0.1 works only here.
`public_host` is the one answer to "where do others reach me", `local_host` the one answer to
"where do the farm's own processes on this machine reach me".
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

WILDCARDS = frozenset({"", "0.0.0.0", "::"})
# Never contacted: a UDP `connect` sends nothing, it only makes the kernel pick the route's
# source address (TEST-NET-1, RFC 5737).
ROUTE_PROBE = ("192.0.2.1", 9)


def is_wildcard(host: str) -> bool:
    return host.strip() in WILDCARDS


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def only_this_machine(bind_host: str) -> bool:
    """A service bound here cannot be reached from any other machine."""
    return is_loopback(bind_host)


def local_host(bind_host: str) -> str:
    """Where a process on this machine connects to a service bound to `bind_host`."""
    if bind_host.strip() == "::":
        return "::1"
    return "127.0.0.1" if is_wildcard(bind_host) else bind_host.strip()


def public_host(bind_host: str, advertise: str, primary: Callable[[], str] | None = None) -> str:
    """The host other machines reach a service bound to `bind_host` at.

    An explicit `advertise` wins; a wildcard bind is reached at this machine's primary
    address (`primary`, by default `primary_address`); any other bind address is itself.
    """
    if advertise.strip():
        return advertise.strip()
    if is_wildcard(bind_host):
        return (primary or primary_address)()
    return bind_host.strip()


def service_url(scheme: str, host: str, port: int) -> str:
    """`scheme://host:port`, with an IPv6 address in brackets."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def primary_address() -> str:
    """This machine's address on its default-route interface; else a non-loopback address its
    name resolves to; else its host name."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(ROUTE_PROBE)
            address = str(probe.getsockname()[0])
        if not is_loopback(address) and not is_wildcard(address):
            return address
    except OSError:
        pass  # no route out: no default-route interface to name
    name = socket.gethostname()
    return first_public(_resolve(name)) or name


def first_public(addresses: list[str]) -> str:
    """The first address that is neither loopback nor link-local, or ""."""
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            continue
        if not ip.is_loopback and not ip.is_link_local and not ip.is_unspecified:
            return address
    return ""


def _resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]
