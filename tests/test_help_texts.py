"""Every command's --help shows its own help and each option's whole.

Typer renders help through Rich markup, where "[the file's name]" is a style tag: it
vanished from `flamenco submit --help` ("Job name ."), as did every bracketed default
written in words. The table is the CLI itself: every command, every parameter.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from flamenco.cli.main import app

ROOT = typer.main.get_command(app)
BOX = re.compile(r"[│╭╮╰╯─┃┏┓┗┛━]")


# Typer's own copy of click: its classes, not click's, hence duck typing (a group has commands).
def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not hasattr(group, "commands"):
        return [path]
    found = [path] if path else []
    for name, command in sorted(group.commands.items()):
        found += _commands(command, (*path, name))
    return found


def _command(path: tuple[str, ...]) -> Any:
    command: Any = ROOT
    for name in path:
        command = command.commands[name]
    return command


def _plain(text: str) -> str:
    """What a reader sees of the help, in one line: no box, no wrapping."""
    return " ".join(BOX.sub(" ", text).split())


def _shown(help_text: str) -> str:
    """A help string as it should read: Rich's escape of a bracket (`\\[`) not shown."""
    return " ".join(help_text.replace("\\[", "[").split())


COMMANDS = _commands(ROOT)


def test_the_table_holds_every_command() -> None:
    assert ("submit",) in COMMANDS and ("jobs", "list") in COMMANDS
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("path", COMMANDS, ids=["-".join(p) for p in COMMANDS])
def test_each_parameters_help_is_shown_whole(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    shown = _plain(result.output)
    command = _command(path)
    if command.help:
        assert _shown(command.help) in shown, f"{command.help!r} not in {shown!r}"
    for param in command.params:
        help_text = getattr(param, "help", None)
        if help_text:
            assert _shown(help_text) in shown, f"{param.name}: {help_text!r} not in {shown!r}"


GROUPS = [path for path in COMMANDS if hasattr(_command(path), "commands")] + [()]


def _summary(command: Any) -> str:
    """The first paragraph of a command's help, as one line: what a group lists it with."""
    first = inspect.cleandoc(command.help or "").split("\n\n")[0]
    return " ".join(first.replace("\\[", "[").split())


@pytest.mark.parametrize("path", GROUPS, ids=["-".join(p) or "flamenco" for p in GROUPS])
def test_a_group_lists_each_command_with_its_summary_on_one_line(path: tuple[str, ...]) -> None:
    """Line breaks of a docstring are not kept in the list (they broke it mid-sentence)."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    lines = [" ".join(BOX.sub(" ", line).split()) for line in result.output.splitlines()]
    for name, command in _command(path).commands.items():
        listed = f"{name} {_summary(command)}"
        assert listed in lines, f"{listed!r} is not one line of {lines!r}"
