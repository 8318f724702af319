"""Table-driven tests for flamenco.core.doctor: what `flamenco doctor` makes of a measurement,
how a finding is printed and the exit code."""

from __future__ import annotations

import pytest

from flamenco.core.doctor import (
    Finding,
    Outcome,
    disk_finding,
    exit_code,
    fail,
    flamenco_command,
    line,
    ok,
    port_finding,
    round_trip,
    skew_finding,
    warn,
)

GB = 1000**3


@pytest.mark.parametrize(
    ("finding", "printed"),
    [
        (ok("Python 3.11"), "✓ Python 3.11"),
        (warn("disk low", "free some"), "! disk low → free some"),
        (fail("Server down", "start it"), "✗ Server down → start it"),
        (fail("a sentence.\nAnd a second line", ""), "✗ a sentence. And a second line"),
        (Finding(Outcome.OK, "fine", "never shown"), "✓ fine"),
    ],
)
def test_a_finding_is_one_line(finding: Finding, printed: str) -> None:
    assert line(finding) == printed


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ([], 0),
        ([Outcome.OK, Outcome.OK], 0),
        ([Outcome.OK, Outcome.WARN], 0),
        ([Outcome.WARN, Outcome.FAIL, Outcome.OK], 1),
        ([Outcome.FAIL], 1),
    ],
)
def test_anything_wrong_fails_the_command(outcomes: list[Outcome], code: int) -> None:
    assert exit_code(Finding(o, "x") for o in outcomes) == code


@pytest.mark.parametrize(
    ("free", "total", "outcome"),
    [
        (100 * GB, 1000 * GB, Outcome.OK),
        (5 * GB, 50 * GB, Outcome.OK),  # 5 GB and 10 %: just enough
        (4 * GB, 50 * GB, Outcome.WARN),  # under 5 GB
        (20 * GB, 1000 * GB, Outcome.WARN),  # under 5 %
        (GB - 1, 1000 * GB, Outcome.FAIL),  # under 1 GB: a job's files may not fit
        (0, 0, Outcome.FAIL),
    ],
)
def test_free_disk(free: int, total: int, outcome: Outcome) -> None:
    found = disk_finding("data", free, total)
    assert found.outcome is outcome
    assert found.text.startswith("disk of data: ")
    assert (found.hint == "") is (outcome is Outcome.OK)


@pytest.mark.parametrize(
    ("skew", "outcome", "text"),
    [
        (0.2, Outcome.OK, "clock: 0 s behind the Server"),
        (-4.9, Outcome.OK, "clock: 5 s ahead of the Server"),
        (5.1, Outcome.FAIL, "clock: 5 s behind the Server"),
        (60.0, Outcome.FAIL, "clock: 60 s behind the Server"),
        (-61.0, Outcome.FAIL, "clock: 61 s ahead of the Server"),
    ],
)
def test_clock_skew(skew: float, outcome: Outcome, text: str) -> None:
    found = skew_finding("the Server", skew)
    assert (found.outcome, found.text) == (outcome, text)


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0004, "<1 ms"), (0.0031, "3 ms"), (1.2, "1200 ms")]
)
def test_round_trip(seconds: float, shown: str) -> None:
    assert round_trip(seconds) == shown


@pytest.mark.parametrize(
    ("cmdline", "command"),
    [
        (["/usr/bin/python3", "-m", "flamenco", "server", "--port", "9999"], "server"),
        (["/opt/venv/bin/python", "/opt/venv/bin/flamenco", "up", "--workers", "2"], "up"),
        (["C:\\venv\\Scripts\\flamenco.exe", "manager"], "manager"),
        (["flamenco", "--ca-bundle", "/ca.pem", "dashboard"], "dashboard"),
        (["flamenco", "--version"], ""),
        (["python3", "-m", "http.server", "7777"], None),
        (["/work/flamenco-data/nginx", "-g", "daemon off;"], None),
        ([], None),
    ],
)
def test_which_flamenco_command_a_process_runs(cmdline: list[str], command: str | None) -> None:
    assert flamenco_command(cmdline) == command


FLAMENCO_SERVER = ["python", "-m", "flamenco", "server"]


@pytest.mark.parametrize(
    ("component", "in_use", "holder", "cmdline", "outcome", "text"),
    [
        ("server", False, None, [], Outcome.OK, "port 9999 (Server): free"),
        (
            "server",
            True,
            "python (pid 7)",
            FLAMENCO_SERVER,
            Outcome.OK,
            "port 9999 (Server): in use by this machine's Server, python (pid 7)",
        ),
        (
            "manager",
            True,
            "python (pid 8)",
            ["python", "-m", "flamenco", "up"],
            Outcome.OK,
            "port 9999 (Manager): in use by this machine's Manager, python (pid 8)",
        ),
        (
            "dashboard",
            True,
            "python (pid 7)",
            FLAMENCO_SERVER,  # the Server on the Dashboard's port: the Dashboard cannot start
            Outcome.FAIL,
            "port 9999 (Dashboard): already in use by python (pid 7)",
        ),
        (
            "server",
            True,
            "nginx (pid 9)",
            ["nginx"],
            Outcome.FAIL,
            "port 9999 (Server): already in use by nginx (pid 9)",
        ),
        (
            "server",
            True,
            None,
            [],
            Outcome.FAIL,
            "port 9999 (Server): already in use by a process this user cannot see",
        ),
    ],
)
def test_ports(
    component: str,
    in_use: bool,
    holder: str | None,
    cmdline: list[str],
    outcome: Outcome,
    text: str,
) -> None:
    found = port_finding(9999, component, in_use, holder, cmdline)
    assert (found.outcome, found.text) == (outcome, text)
    if outcome is Outcome.FAIL:
        assert f"FLAMENCO_{component.upper()}_PORT" in found.hint
