"""The CLI's two consoles. Markup is off: job names and server messages are printed as sent."""

from rich.console import Console

out = Console(markup=False, emoji=False, highlight=False)
err = Console(stderr=True, markup=False, emoji=False, highlight=False)


def secret_for_terminal(secret: str, kept_in: str) -> str:
    """The secret itself for a person at a terminal; otherwise where to read it.

    Output that is not a terminal usually ends in a log file or a journal that outlives the
    session and is read by others, and a secret must never be there.
    """
    return secret if err.is_terminal else f"<{kept_in}>"
