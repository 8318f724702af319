"""What a Manager's DNS-SD announcement says, and which announced Manager a Worker joins.

A Manager announces its site name and URL in the TXT record of a `_flamenco._tcp` service;
never its join secret, which a Worker must be given. A Worker that was given no Manager URL
browses for a while and then picks one here: the only one in view, or the one of the site it
was told to join. Everything else is one sentence (and the list of what it saw) telling the
user what to pass. Pure: the network part is `flamenco.discovery`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SERVICE_TYPE = "_flamenco._tcp.local."
# The TXT keys: all that a Worker needs to find its Manager; nothing that lets anyone in.
TXT_SITE, TXT_URL, TXT_VERSION = "site", "url", "version"
MAX_TXT_VALUE_BYTES = 250  # a TXT string is at most 255 bytes, key and '=' included


@dataclass(frozen=True, order=True)
class Announcement:
    site: str
    url: str


class NoManagerChosen(ValueError):
    """No Manager can be picked from what was seen; the message says why and what to pass."""


def txt_record(site: str, url: str, version: str) -> dict[str, str]:
    """The TXT properties a Manager announces (the site, its URL, the Flamenco version)."""
    record = {TXT_SITE: site, TXT_URL: url, TXT_VERSION: version}
    for key, value in record.items():
        if len(f"{key}={value}".encode()) > MAX_TXT_VALUE_BYTES:
            raise ValueError(f"The announced {key} {value!r} is too long for a DNS-SD TXT record.")
    return record


def read_txt(properties: Mapping[bytes | str, bytes | str | None]) -> Announcement | None:
    """The announcement in a service's TXT properties; None when it is not a Manager's (no
    site, or no http(s) URL)."""
    text = {_text(k): _text(v) for k, v in properties.items() if v is not None}
    site, url = text.get(TXT_SITE, "").strip(), text.get(TXT_URL, "").strip()
    if not site or not site.isprintable() or not url.startswith(("http://", "https://")):
        return None
    return Announcement(site, url.rstrip("/"))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def choose_manager(seen: Sequence[Announcement], site: str, waited_s: float) -> Announcement:
    """The Manager to join among those `seen` during `waited_s` seconds: the only one, or the
    only one of `site` when a site is given. Raises NoManagerChosen with what to do."""
    distinct = sorted(set(seen))
    if site:
        matching = [a for a in distinct if a.site == site]
        if len(matching) == 1:
            return matching[0]
        if matching:
            raise NoManagerChosen(
                _with_list(
                    f"{len(matching)} Managers announce the site '{site}'; "
                    "pass the one to join with --manager URL:",
                    matching,
                )
            )
        if not distinct:
            raise NoManagerChosen(_none_found(waited_s, f"of the site '{site}' "))
        raise NoManagerChosen(
            _with_list(
                f"No Manager of the site '{site}' is in view; the sites seen are "
                "(pass one with --site NAME):",
                distinct,
            )
        )
    if len(distinct) == 1:
        return distinct[0]
    if not distinct:
        raise NoManagerChosen(_none_found(waited_s, ""))
    raise NoManagerChosen(
        _with_list(f"{len(distinct)} Managers are in view; choose one with --site NAME:", distinct)
    )


def cannot_look(reason: str) -> NoManagerChosen:
    """The error for a Worker that could not browse at all (no usable network interface)."""
    return NoManagerChosen(
        f"Could not look for Managers on this network ({reason}); pass --manager URL."
    )


def _none_found(waited_s: float, which: str) -> str:
    return (
        f"No Manager {which}announced itself on this network within {waited_s:g} s; "
        "if multicast is blocked here, pass --manager URL (e.g. --manager http://HOST:7777)."
    )


def _with_list(sentence: str, announcements: Sequence[Announcement]) -> str:
    width = max(len(a.site) for a in announcements)
    return "\n".join([sentence, *(f"  {a.site:<{width}}  {a.url}" for a in announcements)])


def found_line(announcement: Announcement) -> str:
    """The progress line for a Manager that came into view."""
    return f"Found the site '{announcement.site}' at {announcement.url}"
