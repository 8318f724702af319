"""The CLI's two consoles. Markup is off: job names and server messages are printed as sent."""

from rich.console import Console

out = Console(markup=False, emoji=False, highlight=False)
err = Console(stderr=True, markup=False, emoji=False, highlight=False)
