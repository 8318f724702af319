"""`flamenco doctor`'s decisions: what a measurement means (fine, worth a look, wrong), how a
finding is printed, and the command's exit code. No I/O: the checks themselves, which look at
the machine and ask the services, are in cli/doctor.py and hand their measurements here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from flamenco.core.sizes import format_size

# Below these a data folder's disk is worth a look; below FULL_BYTES a frame or a job's files
# may no longer fit, and a task fails with "no space left on device".
LOW_FREE_BYTES = 5 * 1000**3
LOW_FREE_FRACTION = 0.05
FULL_BYTES = 1000**3
# Leases, Worker timeouts and the Dashboard's times compare clocks of different machines.
MAX_CLOCK_SKEW_S = 5.0
# The Server's port, the Manager's and the Dashboard's, by the name of their command.
COMPONENT_NAMES = {"server": "Server", "manager": "Manager", "dashboard": "Dashboard"}
GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--ca-bundle"})  # `flamenco --ca-bundle F up`


class Outcome(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


SYMBOLS = {Outcome.OK: "✓", Outcome.WARN: "!", Outcome.FAIL: "✗"}


@dataclass(frozen=True)
class Finding:
    """One check's result: how it went, what was found, and what to do about it."""

    outcome: Outcome
    text: str
    hint: str = ""


def ok(text: str) -> Finding:
    return Finding(Outcome.OK, text)


def warn(text: str, hint: str) -> Finding:
    return Finding(Outcome.WARN, text, hint)


def fail(text: str, hint: str) -> Finding:
    return Finding(Outcome.FAIL, text, hint)


def line(finding: Finding) -> str:
    """The finding as one line: its symbol, what was found, then (not for ✓) what to do."""
    text = f"{SYMBOLS[finding.outcome]} {finding.text}"
    if finding.hint and finding.outcome is not Outcome.OK:
        text = f"{text.rstrip('.')} → {finding.hint}"
    return " ".join(text.split())  # one line whatever a sentence from elsewhere holds


def exit_code(findings: Iterable[Finding]) -> int:
    """1 when anything is wrong (a ✗), else 0: a warning alone does not fail the command."""
    return 1 if any(f.outcome is Outcome.FAIL for f in findings) else 0


def disk_finding(folder: str, free: int, total: int) -> Finding:
    """Free space of the disk that holds a data folder."""
    share = free / total if total else 0.0
    text = f"disk of {folder}: {format_size(free)} free of {format_size(total)} ({share:.0%})"
    hint = "free some space or move the data folder to a bigger disk (--data-dir)"
    if free < FULL_BYTES:
        return fail(text, hint)
    if free < LOW_FREE_BYTES or share < LOW_FREE_FRACTION:
        return warn(text, f"{hint}; a bounded cache (--cache-size) keeps it from filling")
    return ok(text)


def skew_finding(what: str, skew_s: float) -> Finding:
    """This machine's clock against another's (`skew_s` > 0: the other is ahead)."""
    side = "behind" if skew_s > 0 else "ahead of"
    text = f"clock: {abs(skew_s):.0f} s {side} {what}"
    if abs(skew_s) > MAX_CLOCK_SKEW_S:
        return fail(
            text,
            "synchronise the clocks (NTP, e.g. `timedatectl set-ntp true`); "
            f"leases and timeouts need them within {MAX_CLOCK_SKEW_S:g} s",
        )
    return ok(text)


def round_trip(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else "<1 ms"


def flamenco_command(cmdline: Sequence[str]) -> str | None:
    """Which `flamenco` command a process runs (`server`, `up`...), from its command line
    (`python -m flamenco server ...`, `/usr/bin/flamenco up ...`); None for anything else."""
    for i, arg in enumerate(cmdline):
        if arg.replace("\\", "/").rsplit("/", 1)[-1] not in ("flamenco", "flamenco.exe"):
            continue
        rest = iter(cmdline[i + 1 :])
        for word in rest:
            if word in GLOBAL_OPTIONS_WITH_VALUE:
                next(rest, None)
            elif not word.startswith("-"):
                return word
        return ""
    return None


def port_finding(
    port: int, component: str, in_use: bool, holder: str | None, holder_cmdline: Sequence[str]
) -> Finding:
    """Whether a service's port is free on this machine. Held by that very service (or the
    `flamenco up` that runs it) is fine; held by anything else, the service cannot start.
    `holder` names the process ("python3 (pid 12)"), None when psutil cannot tell."""
    name = COMPONENT_NAMES[component]
    if not in_use:
        return ok(f"port {port} ({name}): free")
    command = flamenco_command(holder_cmdline)
    if holder is not None and command in (component, "up"):
        return ok(f"port {port} ({name}): in use by this machine's {name}, {holder}")
    by = f"by {holder}" if holder else "by a process this user cannot see"
    return fail(
        f"port {port} ({name}): already in use {by}",
        f"stop it, or give the {name} another port (--port, FLAMENCO_{component.upper()}_PORT)",
    )
