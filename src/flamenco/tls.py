"""TLS for the farm: the certificate a service serves with, and what its clients trust.

Services (Server, Manager, Dashboard) serve HTTPS when given `--tls-cert` and `--tls-key`;
`service_tls` checks the pair before anything starts, so a wrong file stops the command with
one sentence instead of a traceback at the first connection. Clients verify the other side
with `client_context`: the system's trust store, or the CA certificates of `--ca-bundle` /
FLAMENCO_CA_BUNDLE. That function and the sentences about failed verification live in the
add-on's trust.py, because the add-on runs inside Blender without this package; every
client here uses that same code.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from flamenco.addon.render_flamenco.trust import (
    TrustError,
    client_context,
    https_only_sentence,
    speaks_tls,
    untrusted_sentence,
    verification_failure,
)

CA_HINT = "pass --ca-bundle FILE or FLAMENCO_CA_BUNDLE"


class TlsConfigError(ValueError):
    """The certificate and key a service was given cannot be served; str() says why."""


@dataclass(frozen=True)
class ServiceTls:
    cert: Path
    key: Path


def scheme(tls: ServiceTls | None) -> str:
    return "https" if tls else "http"


def _encrypted_key() -> bytes:
    raise TlsConfigError("is encrypted")  # never ask for a pass phrase on a service's terminal


def service_tls(cert: str | Path | None, key: str | Path | None) -> ServiceTls | None:
    """The checked pair to serve with, or None (plain HTTP) when neither is given."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise TlsConfigError(
            "--tls-cert and --tls-key go together: pass both for HTTPS, or neither for HTTP."
        )
    pair = ServiceTls(Path(cert).expanduser(), Path(key).expanduser())
    for what, path in (("certificate", pair.cert), ("key", pair.key)):
        try:
            with path.open("rb") as f:
                f.read(1)
        except OSError as exc:
            why = (exc.strerror or exc.__class__.__name__).lower()
            raise TlsConfigError(f"The TLS {what} {path} cannot be read ({why}).") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(pair.cert, pair.key, password=_encrypted_key)
    except TlsConfigError:
        raise TlsConfigError(
            f"The TLS key {pair.key} is encrypted; give the service an unencrypted key."
        ) from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsConfigError(
                f"The TLS key {pair.key} does not match the certificate {pair.cert}."
            ) from None
        raise TlsConfigError(
            f"The TLS certificate {pair.cert} and key {pair.key} are not a PEM certificate "
            "and its private key."
        ) from None
    return pair


__all__ = [
    "CA_HINT",
    "ServiceTls",
    "TlsConfigError",
    "TrustError",
    "client_context",
    "https_only_sentence",
    "scheme",
    "service_tls",
    "speaks_tls",
    "untrusted_sentence",
    "verification_failure",
]
