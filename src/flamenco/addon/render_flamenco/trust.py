"""Which certificates a client trusts, and one sentence when a certificate is not trusted.

Standard library only: this file is the add-on's (it runs inside Blender without Flamenco's
package) and, through flamenco/tls.py, also every other client's (CLI, Manager, Worker,
Dashboard), so that all of them verify in the same way and say the same thing.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path


class TrustError(ValueError):
    """The CA bundle cannot be used; str() is one sentence that says why."""


def client_context(ca_bundle: str | Path | None = None) -> ssl.SSLContext:
    """A context that verifies the other side's certificate and host name: against the CA
    certificates in `ca_bundle` (a PEM file) when given, else the system's trust store."""
    if not ca_bundle:
        return ssl.create_default_context()
    path = Path(ca_bundle).expanduser()
    try:
        return ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise TrustError(f"The CA bundle {path} does not exist.") from None
    except PermissionError:
        raise TrustError(f"The CA bundle {path} cannot be read (permission denied).") from None
    except IsADirectoryError:
        raise TrustError(f"The CA bundle {path} is a folder, not a PEM file.") from None
    except ssl.SSLError:
        raise TrustError(f"The CA bundle {path} holds no PEM certificate.") from None


def verification_failure(exc: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed behind `exc` (httpx and urllib wrap it), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        reason = getattr(exc, "reason", None)  # urllib.error.URLError keeps it here
        if isinstance(reason, ssl.SSLCertVerificationError):
            return reason
        exc = exc.__cause__ or exc.__context__
    return None


def untrusted_sentence(host_port: str, failure: ssl.SSLCertVerificationError, hint: str) -> str:
    """E.g. "The certificate of farm:9999 is not trusted (self-signed certificate); <hint>."."""
    reason = (failure.verify_message or failure.reason or str(failure)).strip().rstrip(".")
    # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
    if failure.verify_code in (62, 64) or "mismatch" in reason.lower():
        return f"The certificate of {host_port} is not valid for that host name ({reason}); {hint}."
    return f"The certificate of {host_port} is not trusted ({reason}); {hint}."


def speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether the service at host:port answers a TLS handshake (only the handshake: no
    request is sent), to tell a user who wrote http:// for an https:// service so."""
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE  # only asks whether TLS is spoken; nothing is sent
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            probe.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ValueError):
        return False


def https_only_sentence(host_port: str) -> str:
    return (
        f"{host_port} speaks HTTPS, not plain HTTP; use https://{host_port} "
        "(nothing is retried in plain HTTP)."
    )
