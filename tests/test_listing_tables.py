"""The CLI's listings (`jobs list`, `jobs show`, `tokens list`, `managers list`) in 80
columns, the width Rich assumes for a pipe and the narrowest terminal in use: statuses,
progress and ids are shown whole (they were cut to "complet…"), names wrap within their
column rather than end in an ellipsis."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from flamenco.cli.console import listing

JOB_ROWS = [
    ("Flamenco demo", "completed", "24/24 100%", "50", "admin", "f3fe53211c03"),
    ("shot_010_lighting_v12_final", "pause-requested", "370/1000 37%", "100", "alice", "0a1b2c"),
    ("bake fluids", "cancel-requested", "12%", "5", "bob.with.a.long.name", "0a1b2c3d4e60"),
]
TOKEN_ROWS = [
    ("12 *", "admin", "flamenco up", "2026-12-05 07:42 UTC", "never", "2026-12-05 08:01 UTC"),
    ("13", "alice", "add-on on ws-04", "2026-12-05 07:50 UTC", "2027-03-05 07:50 UTC", "never"),
]
MANAGER_ROWS = [
    ("paris-floor-2", "online", "10.20.0.4", "render-017: awake, task f3fe53211c0300000002"),
]
TASK_ROWS = [
    ("render 9-12", "soft-failed", "100%", "render-node-017", "Blender 5.0 Sample 4/8", "f3fe53"),
]


def _shown(headers: tuple[str, ...], rows: list[tuple[str, ...]], width: int) -> list[str]:
    table = listing(*headers)
    for row in rows:
        table.add_row(*row)
    console = Console(file=io.StringIO(), width=width, markup=False)
    console.print(table)
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def _cells(lines: list[str], column: int) -> str:
    """Column `column` of the table's body, its lines joined: a wrapped cell read whole."""
    body = [line for line in lines if line.startswith("│")]
    return "".join(line.split("│")[column + 1].strip() for line in body)


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize(
    ("headers", "rows"),
    [
        (("name", "=status", "=progress", "=priority", "submitter", "=id"), JOB_ROWS),
        (("name", "=status", "=progress", "worker", "activity", "=task"), TASK_ROWS),
        (("=id", "user", "label", "created", "expires", "last used"), TOKEN_ROWS),
        (("site", "=state", "address", "workers"), MANAGER_ROWS),
    ],
    ids=["jobs-list", "jobs-show", "tokens-list", "managers-list"],
)
def test_short_values_are_whole_and_names_wrap(
    headers: tuple[str, ...], rows: list[tuple[str, ...]], width: int
) -> None:
    lines = _shown(headers, rows, width)
    assert all(len(line) <= width for line in lines)
    assert "…" not in "\n".join(lines)
    body = [line for line in lines if line.startswith("│")]
    for column, header in enumerate(headers):
        if header.startswith("="):  # on one line of the row, as it is
            for row in rows:
                assert any(f"│ {row[column]} " in line for line in body), (row[column], lines)
        else:  # every character of it, wrapped within its column
            assert _cells(lines, column).replace(" ", "") == "".join(
                row[column].replace(" ", "") for row in rows
            ), lines
