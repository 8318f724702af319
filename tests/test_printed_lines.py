"""A command the CLI prints for pasting stays on one line, in a log (a pipe) and in a terminal.

Rich assumes 80 columns for a pipe and breaks longer lines there, which cut a pasted command
before its end (often the secret). The Manager's "Workers join with:" line is the example.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from farmkit import free_port, wait_until

LONG_HOST = "a-rather-long-host-name.render-floor.studio.example"
SECRET = "k3ZVx0-secret-that-must-arrive-whole-Q9w2"


def _read_into(fd: int, sink: list[str]) -> None:
    with contextlib.suppress(OSError):  # the pty's end reads EIO once the process is gone
        while chunk := os.read(fd, 4096):
            sink.append(chunk.decode(errors="replace"))


@pytest.mark.parametrize("stdout", ["pipe", "terminal"])
def test_the_worker_command_the_manager_prints_is_one_line(tmp_path: Path, stdout: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env |= {
        "FLAMENCO_MANAGER_SECRET": SECRET,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "FLAMENCO_CONFIG": str(tmp_path / "none.toml"),
    }
    command = [
        sys.executable,
        "-m",
        "flamenco",
        "manager",
        "--token",
        "not-checked-before-the-first-sync",
        "--server",
        f"http://127.0.0.1:{free_port()}",  # nothing there: the Manager works offline
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "manager"),
        "--advertise",
        LONG_HOST,
    ]
    read_fd, write_fd = os.pipe() if stdout == "pipe" else pty.openpty()
    if stdout == "terminal":  # a terminal of 80 columns, as a new one often is
        fcntl.ioctl(write_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        command, stdout=write_fd, stderr=write_fd, env=env, start_new_session=True
    )
    os.close(write_fd)
    chunks: list[str] = []
    threading.Thread(target=_read_into, args=(read_fd, chunks), daemon=True).start()
    try:

        def join_line() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"the Manager exited:\n{''.join(chunks)}")
            text = "".join(chunks)
            if "Workers join with:" not in text or f":{port}" not in text.split("join with:")[1]:
                return None
            return next(line for line in text.splitlines() if "Workers join with:" in line)

        line = wait_until(join_line, 60, "the Manager's 'Workers join with' line")
        expected_secret = SECRET if stdout == "terminal" else "<the join secret:"
        assert len(line) > 80
        assert f"FLAMENCO_WORKER_SECRET={expected_secret}" in line, line
        assert line.rstrip().endswith(f"flamenco worker --manager http://{LONG_HOST}:{port}"), line
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(read_fd)
