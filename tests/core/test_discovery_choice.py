"""Table-driven tests for flamenco.core.discovery: what a Manager announces, whom a Worker joins."""

from __future__ import annotations

import pytest

from flamenco.core.discovery import (
    TXT_SITE,
    TXT_URL,
    Announcement,
    NoManagerChosen,
    cannot_look,
    choose_manager,
    read_txt,
    txt_record,
)

NORTH = Announcement("north", "http://10.0.0.1:7777")
SOUTH = Announcement("south", "https://10.0.1.1:7777")
NORTH_TWIN = Announcement("north", "http://10.0.9.9:7777")  # another farm's site of that name


@pytest.mark.parametrize(
    ("seen", "site", "joined"),
    [
        ([NORTH], "", NORTH),
        ([NORTH, NORTH], "", NORTH),  # one Manager heard on two interfaces
        ([NORTH, SOUTH], "south", SOUTH),
        ([NORTH, SOUTH], "north", NORTH),
        ([SOUTH], "south", SOUTH),
    ],
)
def test_the_manager_joined(seen: list[Announcement], site: str, joined: Announcement) -> None:
    assert choose_manager(seen, site, 5) == joined


@pytest.mark.parametrize(
    ("seen", "site", "message"),
    [
        (
            [],
            "",
            "No Manager announced itself on this network within 5 s; if multicast is blocked "
            "here, pass --manager URL (e.g. --manager http://HOST:7777).",
        ),
        (
            [],
            "north",
            "No Manager of the site 'north' announced itself on this network within 5 s; if "
            "multicast is blocked here, pass --manager URL (e.g. --manager http://HOST:7777).",
        ),
        (
            [SOUTH, NORTH],
            "",
            "2 Managers are in view; choose one with --site NAME:\n"
            "  north  http://10.0.0.1:7777\n"
            "  south  https://10.0.1.1:7777",
        ),
        (
            [NORTH, SOUTH],
            "west",
            "No Manager of the site 'west' is in view; the sites seen are (pass one with "
            "--site NAME):\n"
            "  north  http://10.0.0.1:7777\n"
            "  south  https://10.0.1.1:7777",
        ),
        (
            [NORTH, NORTH_TWIN, SOUTH],
            "north",
            "2 Managers announce the site 'north'; pass the one to join with --manager URL:\n"
            "  north  http://10.0.0.1:7777\n"
            "  north  http://10.0.9.9:7777",
        ),
    ],
)
def test_no_manager_chosen_says_why_and_lists_what_was_seen(
    seen: list[Announcement], site: str, message: str
) -> None:
    with pytest.raises(NoManagerChosen) as refused:
        choose_manager(seen, site, 5)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("properties", "read"),
    [
        ({b"site": b"north", b"url": b"http://10.0.0.1:7777"}, NORTH),
        ({b"site": b"north", b"url": b"http://10.0.0.1:7777/", b"version": b"0.1"}, NORTH),
        ({"site": "south", "url": "https://10.0.1.1:7777"}, SOUTH),
        ({b"site": b"north"}, None),  # no URL
        ({b"url": b"http://10.0.0.1:7777"}, None),  # no site
        ({b"site": b"north", b"url": b"ftp://10.0.0.1"}, None),  # not the farm's HTTP
        ({b"site": b"north", b"url": None}, None),  # a key without a value
        ({b"site": b"no\x07rth", b"url": b"http://10.0.0.1:7777"}, None),
        ({}, None),
    ],
)
def test_reading_an_announcement(
    properties: dict[bytes | str, bytes | str | None], read: Announcement | None
) -> None:
    assert read_txt(properties) == read


def test_the_announcement_carries_site_url_and_version_only() -> None:
    record = txt_record("north", "http://10.0.0.1:7777", "0.1.0")
    assert record == {"site": "north", "url": "http://10.0.0.1:7777", "version": "0.1.0"}
    assert read_txt(record) == NORTH
    assert {TXT_SITE, TXT_URL} <= record.keys()


def test_a_site_name_too_long_for_a_txt_record_is_refused() -> None:
    with pytest.raises(ValueError, match="too long for a DNS-SD TXT record"):
        txt_record("n" * 250, "http://10.0.0.1:7777", "0.1.0")


def test_a_worker_that_cannot_browse_is_told_to_name_its_manager() -> None:
    assert str(cannot_look("No such device")) == (
        "Could not look for Managers on this network (No such device); pass --manager URL."
    )
