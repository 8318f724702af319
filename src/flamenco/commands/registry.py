"""The commands installed on this Worker: entry points of the group `flamenco.commands`.

Each entry point is ``name = "module:OBJECT"`` where OBJECT is a `Command` (or a class whose
instances are). The built-ins are declared in Flamenco's own pyproject.toml; a studio's
package declares its own the same way and is found once installed next to Flamenco.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from flamenco.commands import Command, CommandFailed

log = logging.getLogger("flamenco.commands")

GROUP = "flamenco.commands"
# Task types from before commands had their names: a task leased by an older Server.
ALIASES = {"blender": "blender-render"}


class CommandNotInstalled(CommandFailed):
    """The task names a command this Worker lacks: the machine's fault, so another Worker
    that has it takes the task."""

    def __init__(self, name: str) -> None:
        super().__init__(f"This Worker has no command {name} installed.")


def installed_commands() -> dict[str, Command]:
    """Every command that loads, by its entry point's name. One that does not load is left
    out and logged, so one broken package does not keep the Worker from the others."""
    found: dict[str, Command] = {}
    for point in entry_points(group=GROUP):
        try:
            loaded = point.load()
            command = loaded() if isinstance(loaded, type) else loaded
        except Exception as exc:
            log.error("command %s (%s) does not load: %s", point.name, point.value, exc)
            continue
        if not isinstance(command, Command):
            log.error("command %s (%s) has no name and run(task, report)", point.name, point.value)
            continue
        found.setdefault(point.name, command)
    return found


def advertised(commands: dict[str, Command]) -> list[str]:
    """The task types a Worker with `commands` runs, as it tells its Manager: their names and
    the old names of those among them, sorted."""
    aliases = [old for old, name in ALIASES.items() if name in commands]
    return sorted([*commands, *aliases])


def command_for(task_type: str, commands: dict[str, Command]) -> Command:
    """The command that runs tasks of `task_type`; CommandNotInstalled when there is none."""
    command = commands.get(ALIASES.get(task_type, task_type))
    if command is None:
        raise CommandNotInstalled(task_type)
    return command
