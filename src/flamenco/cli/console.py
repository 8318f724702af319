"""The CLI's two consoles. Markup is off: job names and server messages are printed as sent.

Lines are never broken by the CLI (soft wrap): a command or URL it prints is pasted elsewhere,
and one cut at 80 columns (the width Rich assumes for a pipe or a log) loses its end, often
the secret. The terminal wraps long lines for the eye; tables still fit the width.
"""

from rich.console import Console
from rich.table import Table

out = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)


def secret_for_terminal(secret: str, kept_in: str) -> str:
    """The secret itself for a person at a terminal; otherwise where to read it.

    Output that is not a terminal usually ends in a log file or a journal that outlives the
    session and is read by others, and a secret must never be there.
    """
    return secret if err.is_terminal else f"<{kept_in}>"


def listing(*headers: str) -> Table:
    """A table whose columns marked "=" hold short values read or typed back whole (statuses,
    counts, ids): they never wrap or end in an ellipsis while the others (names, free text)
    can wrap instead, so that a listing stays readable in 80 columns."""
    table = Table()
    for header in headers:
        if header.startswith("="):
            table.add_column(header[1:], no_wrap=True)
        else:
            table.add_column(header, overflow="fold")
    return table
