"""Structured logs: one line per event, with the job, task and worker it is about."""

from __future__ import annotations

import logging
import sys

CONTEXT_KEYS = ("job", "task", "worker")


class KeyValueFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component
        # (second, its text): one tuple, so threads that log at once never mix two seconds
        self._stamp = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second, when = self._stamp
        if int(record.created) != second:  # a busy farm logs thousands of lines a second
            when = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            self._stamp = (int(record.created), when)
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
    # What no line shows is not gathered for each record: the caller's file and line, thread,
    # process (the logging HOWTO's "Optimization"; a busy Server logs every task's change).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
