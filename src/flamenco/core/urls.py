"""Which URLs the farm accepts for its services and notifications: pure, no I/O."""

from __future__ import annotations

from urllib.parse import urlsplit


def check_http_url(url: str, name: str = "") -> str:
    """The URL without surrounding blanks, if it is an http(s) URL with a host; else a
    ValueError saying so in one sentence, the URL named as `name` says (e.g. "The
    notification URL") or by itself."""
    stripped = url.strip()
    try:
        parts = urlsplit(stripped)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        valid = False
    if not valid:
        said = f"{name} '{url}'" if name else f"'{url}'"
        raise ValueError(f"{said} is not an http:// or https:// URL with a host.")
    return stripped
