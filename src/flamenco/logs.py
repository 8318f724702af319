"""Structured logs: one line per event, with the job, task and worker it is about."""

from __future__ import annotations

import logging
import sys

CONTEXT_KEYS = ("job", "task", "worker")


class KeyValueFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        when = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        parts = [
            f"{when} {record.levelname:<7} {self.component} {record.name}: {record.getMessage()}"
        ]
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value:
                parts.append(f"{key}={value}")
        if record.exc_info:
            parts.append("\n" + self.formatException(record.exc_info))
        return " ".join(parts)


def setup_logging(component: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
