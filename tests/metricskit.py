"""Reading a service's /metrics as Prometheus does: over HTTP with a bearer token, parsed by
prometheus-client's own text parser."""

from __future__ import annotations

import ssl

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def scrape(url: str, token: str, verify: ssl.SSLContext | bool = True) -> list[Sample]:
    """Every sample of `url`/metrics; fails the test with the answer when it is not a 200."""
    answer = httpx.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10, verify=verify
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(answer.text) for s in family.samples]


def family_names(url: str, token: str, verify: ssl.SSLContext | bool = True) -> set[str]:
    """The names a scrape of `url` declares: families and their samples (_total, _bucket…)."""
    answer = httpx.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10, verify=verify
    )
    assert answer.status_code == 200, answer.text
    names: set[str] = set()
    for family in text_string_to_metric_families(answer.text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def has(samples: list[Sample], name: str) -> bool:
    return any(s.name == name for s in samples)
