"""Table-driven tests for flamenco.core.urls: the service URLs people give the farm."""

from __future__ import annotations

import pytest

from flamenco.core.urls import check_http_url


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://127.0.0.1:9999", "http://127.0.0.1:9999"),
        ("https://farm.studio.example", "https://farm.studio.example"),
        ("  http://render-01:7777/\n", "http://render-01:7777/"),  # pasted with a newline
        ("http://[::1]:9999", "http://[::1]:9999"),
        ("https://farm.example/flamenco/", "https://farm.example/flamenco/"),  # behind a proxy
    ],
)
def test_urls_that_are_kept(given: str, kept: str) -> None:
    assert check_http_url(given) == kept


@pytest.mark.parametrize(
    "given",
    [
        "notaurl",
        "localhost:7777",  # no scheme: urlsplit reads "localhost" as one
        "render-01",
        "ftp://farm.example",
        "http://",
        "http://:9999",
        "http://farm:port",
        "http://[::1",
        "",
    ],
)
def test_urls_that_are_refused_in_one_sentence(given: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_http_url(given, "The Server URL")
    assert str(refused.value) == (
        f"The Server URL '{given}' is not an http:// or https:// URL with a host."
    )


def test_without_a_name_the_url_is_named_by_itself() -> None:
    with pytest.raises(ValueError, match=r"^'nope' is not an http:// or https:// URL"):
        check_http_url("nope")
