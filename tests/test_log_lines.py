"""The components' log lines: time, level, component, logger, message, context keys; the time
text is made once a second, and right for every record."""

from __future__ import annotations

import logging
import time

from flamenco.logs import KeyValueFormatter


def record(created: float, message: str, **context: str) -> logging.LogRecord:
    rec = logging.LogRecord("flamenco.server", logging.INFO, "", 0, message, (), None)
    rec.created = created
    for key, value in context.items():
        setattr(rec, key, value)
    return rec


def test_each_line_has_its_own_seconds_time_and_its_context() -> None:
    formatter = KeyValueFormatter("server")
    start = float(int(time.time()))
    lines = [
        formatter.format(record(start + offset, f"line {n}", task="t1", worker="w1"))
        for n, offset in enumerate((0.1, 0.9, 1.2, 0.5, 61.0))
    ]
    for line, offset in zip(lines, (0.1, 0.9, 1.2, 0.5, 61.0), strict=True):
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start + offset))
        assert line.startswith(f"{expected} INFO    server flamenco.server: line ")
        assert line.endswith(" task=t1 worker=w1")
