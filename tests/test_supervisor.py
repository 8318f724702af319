"""The supervisor of `flamenco up`: back-off, restarts of real processes, and stopping them all."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from farmkit import process_gone, wait_until
from flamenco.cli.supervisor import Backoff, Supervisor, describe_exit

BACKOFF = Backoff(first_s=0.5, max_s=30.0, stable_s=60.0)


@pytest.mark.parametrize(
    ("previous_s", "uptime_s", "expected_s"),
    [
        (None, 0.1, 0.5),  # the first death
        (None, 500.0, 0.5),
        (0.5, 0.1, 1.0),  # died again soon after the restart: twice as long
        (8.0, 3.0, 16.0),
        (16.0, 3.0, 30.0),  # never more than max_s
        (30.0, 59.9, 30.0),
        (30.0, 60.0, 0.5),  # stayed up a while: a new reason, start over
    ],
)
def test_the_back_off_doubles_up_to_its_limit_and_starts_over_after_a_stable_run(
    previous_s: float | None, uptime_s: float, expected_s: float
) -> None:
    assert BACKOFF.next_delay(previous_s, uptime_s) == expected_s


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (3, "exited with code 3"),
        (0, "exited with code 0"),
        (-signal.SIGKILL, "was killed by SIGKILL"),
        (-signal.SIGSEGV, "was killed by SIGSEGV"),
    ],
)
def test_an_exit_is_described_by_its_code_or_signal(returncode: int, expected: str) -> None:
    assert describe_exit(returncode) == expected


def python_child(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_a_child_that_keeps_exiting_is_started_again_later_each_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    starts = tmp_path / "starts"
    program = python_child(
        "import sys, time; open(sys.argv[1], 'a').write(f'{time.monotonic()}\\n'); sys.exit(3)"
    )
    farm = Supervisor(Backoff(first_s=0.2, max_s=0.8, stable_s=60.0), program=program)
    caplog.set_level(logging.INFO, "flamenco.up")
    try:
        child = farm.start("Flaky", [str(starts)], {}, tmp_path / "logs" / "flaky.log")

        def started_five_times() -> bool:
            farm.watch()
            return starts.is_file() and len(starts.read_text().split()) >= 5

        wait_until(started_five_times, 60, "five starts of the failing child", every=0.02)
    finally:
        farm.stop()
    times = [float(t) for t in starts.read_text().split()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # 0.2, 0.4, 0.8, 0.8 s at least (plus the start of Python each time)
    for gap, wait_s in zip(gaps, [0.2, 0.4, 0.8, 0.8], strict=False):
        assert gap >= wait_s, gaps
    assert set(child.exits) == {3}
    assert "Flaky (pid " in caplog.text
    assert "exited with code 3" in caplog.text
    assert "starting it again in 0.4 s" in caplog.text
    assert "Flaky started again" in caplog.text
    assert stat.S_IMODE((tmp_path / "logs" / "flaky.log").stat().st_mode) == 0o600


def test_a_killed_child_comes_back_and_stop_ends_every_child(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    program = python_child("import time; time.sleep(600)")
    log_file = tmp_path / "old.log"
    log_file.write_text("from an older run\n")
    log_file.chmod(0o644)
    farm = Supervisor(Backoff(first_s=0.1), program=program)
    caplog.set_level(logging.INFO, "flamenco.up")
    try:
        sleeper = farm.start("Sleeper", [], {}, log_file)
        other = farm.start("Other", [], {}, tmp_path / "other.log")
        assert sleeper.proc is not None and other.proc is not None
        first_pid, other_pid = sleeper.proc.pid, other.proc.pid
        os.kill(first_pid, signal.SIGKILL)

        def restarted() -> bool:
            farm.watch()
            return sleeper.running and sleeper.proc is not None and sleeper.proc.pid != first_pid

        wait_until(restarted, 30, "the killed child running again", every=0.02)
        assert "was killed by SIGKILL" in caplog.text
        assert other.running and other.proc.pid == other_pid  # the others never noticed
        second_pid = sleeper.proc.pid
    finally:
        farm.stop()
    assert process_gone(second_pid) and process_gone(other_pid)
    farm.watch()  # after the stop, nothing starts again: the farm is going down
    assert not sleeper.running and sleeper.restarts == 1
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600  # an old 0644 log made private


def test_a_child_that_cannot_be_started_is_tried_again_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log folder should be")
    farm = Supervisor(Backoff(first_s=0.05), program=python_child("pass"))
    caplog.set_level(logging.INFO, "flamenco.up")
    try:
        child = farm.start("Stuck", [], {}, blocker / "stuck.log")
        assert child.proc is None
        farm.watch()
        assert "Stuck (pid -) could not be started" in caplog.text
        blocker.unlink()  # the cause goes away: the next try starts it

        def started() -> bool:
            farm.watch()
            return child.proc is not None

        wait_until(started, 30, "the child started once its log folder can be made", every=0.02)
        assert child.restarts == 1
    finally:
        farm.stop()
