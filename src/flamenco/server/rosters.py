"""What a Manager's Workers can do, as its syncs see them, parsed once and not at every sync.

A Manager sends its Workers (hundreds at a big site) about once a second and leaves them out
of its other syncs, several a second; each sync that leases needs their capabilities.
Decoding the stored rows, validating them and working out the capabilities of every Worker
cost a sync milliseconds, so the result is kept per Manager and used again as long as the
stored column's text is the same (so a write by anything else is seen, and parsed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flamenco import wire
from flamenco.core.matching import Capabilities


@dataclass(frozen=True)
class Roster:
    """A Manager's Workers: the rows as stored, and what the working ones can do."""

    stored: list[dict[str, Any]]
    capable: dict[str, Capabilities]  # the working Workers' capabilities, by name
    text: str | None = None  # the stored column as the database gives it, once read
    kinds: list[Capabilities] = field(init=False)  # each distinct one once: matching's cost

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", list(dict.fromkeys(self.capable.values())))

    @classmethod
    def of(
        cls,
        stored: list[dict[str, Any]],
        workers: list[wire.WorkerSummary],
        text: str | None = None,
    ) -> Roster:
        working = (w for w in workers if w.status in wire.WORKING_STATUSES)
        return cls(stored, {w.name: w.capabilities() for w in working}, text)

    def allowed(self, blocked: set[str]) -> list[Capabilities]:
        """The distinct capabilities of the working Workers not among `blocked`."""
        if not blocked:
            return self.kinds
        return list(dict.fromkeys(c for name, c in self.capable.items() if name not in blocked))


class Rosters:
    """The latest Roster of each Manager, for its next syncs."""

    def __init__(self) -> None:
        self._latest: dict[int, Roster] = {}

    def reported(self, manager_id: int, workers: list[wire.WorkerSummary]) -> Roster:
        """The Workers a sync brought; `stored` is what the Manager's row keeps of them."""
        roster = Roster.of([w.model_dump(mode="json") for w in workers], workers)
        self._latest[manager_id] = roster
        return roster

    def stored(self, manager_id: int, text: str) -> Roster:
        """The Workers as the Manager's row keeps them (`text`: the column as stored, JSON):
        decoded only when the text changed, parsed again only when the rows did."""
        latest = self._latest.get(manager_id)
        if latest is not None and latest.text == text:
            return latest
        rows = json.loads(text)
        if latest is not None and latest.stored == rows:  # as the sync that reported wrote
            roster = Roster(latest.stored, latest.capable, text)
        else:
            roster = Roster.of(rows, wire.worker_summaries(rows)[0], text)
        self._latest[manager_id] = roster
        return roster
