"""Prometheus metrics, what the Server's and the Manager's share: a registry per app (never
prometheus-client's global one, so that several apps in one process keep theirs apart), the
latency buckets, families read from a component's state at scrape time, the answer a scrape
gets, and the sentences for a request without a metrics token.

Counters and histograms are updated where things happen (an observe costs a microsecond or
two, `tests/test_metrics_cost.py`); gauges are read when Prometheus scrapes, never kept up to
date on a hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# An answer given at once takes milliseconds; a held long poll up to its wait (30 s at most).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    15.0,
    30.0,
)
# A frame or blob streamed in or out: tens of milliseconds to minutes.
UPLOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

METRICS_TOKEN_PREFIX = "flr"  # read-only: it reads /metrics and nothing else
NO_METRICS_TOKEN = (
    "The request has no token; /metrics needs a metrics token (flamenco metrics token)."
)
NOT_A_METRICS_TOKEN = (
    "This token is not a metrics token of this farm; make one with `flamenco metrics token`."
)


HELD = ("yes", "no")  # the values of a sync's `held` label


def held_label(wait_s: float) -> str:
    """Whether a sync asked to be held (a long poll): its time is then mostly waiting."""
    return "yes" if wait_s > 0 else "no"


class StateCollector(Collector):
    """Families read at scrape time by `read` (from memory or the database, never cached)."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        yield from self.read()

    def describe(self) -> Iterable[Metric]:
        return ()  # registering must not read the state; the names are not checked twice


def gauge(
    name: str, documentation: str, labels: tuple[str, ...], values: Mapping[tuple[str, ...], float]
) -> GaugeMetricFamily:
    """A gauge family with one sample per label values."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


def single_gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def metrics_response(registry: CollectorRegistry) -> Response:
    """What a scrape gets: the registry in Prometheus' text format."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
