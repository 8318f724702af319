"""The platform decisions of `flamenco.procs`, for Linux, macOS and Windows, table-driven.

Nothing here runs Windows or macOS: these tests check *what* procs would call there (the
decisions are pure functions of the platform); the Windows calls themselves (CREATE_NEW_PROCESS_
GROUP, CTRL_BREAK_EVENT, TerminateProcess through psutil) are untested here. The POSIX branch
runs for real in tests/test_process_trees.py.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path

import pytest

from flamenco import procs

LINUX, MAC, WINDOWS = "linux", "darwin", "win32"


@pytest.mark.parametrize(
    ("platform", "own_group", "expected"),
    [
        (LINUX, True, {"start_new_session": True, "preexec_fn": procs.die_with_parent}),
        (LINUX, False, {"start_new_session": False, "preexec_fn": procs.die_with_parent}),
        (MAC, True, {"start_new_session": True}),  # no PR_SET_PDEATHSIG on macOS
        (MAC, False, {"start_new_session": False}),
        # Windows: always a group of its own, the only target a polite CTRL_BREAK_EVENT has
        (WINDOWS, True, {"creationflags": 0x200}),
        (WINDOWS, False, {"creationflags": 0x200}),
    ],
)
def test_children_are_started_with_the_options_of_their_platform(
    platform: str, own_group: bool, expected: dict[str, object]
) -> None:
    assert procs.spawn_options(own_group, platform) == expected


@pytest.mark.parametrize(
    ("platform", "own_group", "signal_name", "whole_group", "group_kill"),
    [
        (LINUX, True, "SIGTERM", True, "SIGKILL"),
        (LINUX, False, "SIGTERM", False, None),
        (MAC, True, "SIGTERM", True, "SIGKILL"),
        (MAC, False, "SIGTERM", False, None),
        (WINDOWS, True, "CTRL_BREAK_EVENT", False, None),  # os.kill(pid, …) reaches its group
        (WINDOWS, False, "CTRL_BREAK_EVENT", False, None),
    ],
)
def test_a_child_is_asked_to_stop_then_killed_as_its_platform_allows(
    platform: str, own_group: bool, signal_name: str, whole_group: bool, group_kill: str | None
) -> None:
    assert procs.polite_stop(own_group, platform) == procs.PoliteStop(signal_name, whole_group)
    assert procs.group_kill_signal_name(own_group, platform) == group_kill


@pytest.mark.parametrize(
    ("platform", "names", "loop_handlers"),
    [
        (LINUX, ("SIGINT", "SIGTERM"), True),
        (MAC, ("SIGINT", "SIGTERM"), True),
        # Ctrl-Break is how a parent stops a child on Windows; its loops have no signal handlers
        (WINDOWS, ("SIGINT", "SIGTERM", "SIGBREAK"), False),
    ],
)
def test_the_signals_that_stop_a_component_on_each_platform(
    platform: str, names: tuple[str, ...], loop_handlers: bool
) -> None:
    assert procs.shutdown_signal_names(platform) == names
    assert procs.uses_loop_signal_handlers(platform) is loop_handlers


def test_the_machine_facts_come_without_os_uname() -> None:
    assert procs.host_name() == os.uname().nodename  # the same name as before, on Linux
    assert procs.cpu_count() == os.cpu_count()
    assert procs.memory_mb() > procs.memory_used_mb() > 0
    busy, total = procs.cpu_busy_and_total_s()
    assert 0 < busy < total
    assert "Linux" in procs.os_description()


def _modules_of(package: str) -> list[str]:
    root = importlib.import_module(package)
    return [package] + [
        info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
    ]


def test_the_worker_and_the_cli_import_and_describe_the_machine_on_windows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every module of flamenco.worker and flamenco.cli imported afresh with the platform
    faked to Windows and the POSIX-only calls gone; then a Worker's settings and machine
    description are built. What the modules import from outside flamenco (asyncio, subprocess,
    uvicorn…) is imported for real first: those are not ours to check."""
    packages = ("flamenco.worker", "flamenco.cli")
    names = [name for package in packages for name in _modules_of(package)]
    for name in names:
        importlib.import_module(name)  # pulls in every outside dependency, on the real platform
    for name in [n for n in sys.modules if n == "flamenco" or n.startswith("flamenco.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setattr(sys, "platform", "win32")
    for posix_only in ("uname", "killpg", "setsid", "getpgid", "geteuid", "fchmod"):
        monkeypatch.delattr(os, posix_only)
    monkeypatch.setenv("FLAMENCO_CONFIG", str(tmp_path / "none.toml"))

    imported = [importlib.import_module(name) for name in names]
    assert len(imported) == len(names) >= 10

    config = importlib.import_module("flamenco.config")
    machine = importlib.import_module("flamenco.worker.machine")
    settings = config.load(
        config.WorkerSettings, {"manager": "http://manager:7777", "data_dir": tmp_path / "w"}
    )
    assert settings.name  # the host's name, without os.uname
    info = machine.describe_machine(["4.2.0", "5.0.1"], ["gpu"], [])
    assert (info.blender_version, info.cpu_count) == ("5.0.1", os.cpu_count())
    assert info.memory_mb > 0 and info.platform
    stats = machine.StatsSampler().sample()
    assert 0.0 <= stats.cpu_percent <= 100.0 and stats.memory_used_mb > 0
    fresh_procs = importlib.import_module("flamenco.procs")
    assert fresh_procs.spawn_options(own_group=True) == {"creationflags": 0x200}
