"""`flamenco service install|remove` as a user runs it: a real process writing real files.

systemd does not run in this container (no systemd as PID 1, no user bus), so a stand-in
`systemctl` first on PATH records how it was called; everything else is real, and the unit the
command wrote is checked by `systemd-analyze verify`.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_service_units import systemd_analyze

SECRET = "s3cret-join-value"


@dataclass
class Machine:
    """A home, a config folder and a working folder of their own, and the recorded systemctl."""

    root: Path
    env: dict[str, str]
    calls: Path

    @property
    def unit(self) -> Path:
        return self.root / "config/systemd/user/flamenco-worker.service"

    @property
    def env_file(self) -> Path:
        return self.root / "config/flamenco/flamenco-worker.env"

    def flamenco(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flamenco", *args],
            cwd=self.root / "work",
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def systemctl_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl-calls"
    systemctl = bin_dir / "systemctl"
    # Stand-in for systemctl (see the module's docstring): records its arguments; exit status
    # and message from FAKE_SYSTEMCTL_FAIL when set.
    systemctl.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{calls}"\n'
        'if [ -n "$FAKE_SYSTEMCTL_FAIL" ]; then echo "$FAKE_SYSTEMCTL_FAIL" >&2; exit 1; fi\n'
    )
    systemctl.chmod(0o755)
    (tmp_path / "work").mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLAMENCO_") and not key.startswith("XDG_")
    }
    env |= {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FLAMENCO_WORKER_TAGS": "gpu,fast",  # carried into the service's environment
        "COLUMNS": "40",  # a narrow terminal: the printed commands must still be whole lines
    }
    return Machine(tmp_path, env, calls)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_writes_a_private_environment_starts_the_unit_and_remove_undoes_it(
    machine: Machine,
) -> None:
    installed = machine.flamenco(
        "service", "install", "--user", "worker",
        "--manager", "http://127.0.0.1:7777", "--secret", SECRET, "--name", "box one",
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    unit = machine.unit.read_text()
    assert mode(machine.unit) == 0o644
    assert SECRET not in unit
    assert (
        f"ExecStart={sys.executable} -m flamenco worker --manager http://127.0.0.1:7777 "
        '--name "box one"'
    ) in unit.splitlines()
    assert f"WorkingDirectory={machine.root / 'work'}" in unit.splitlines()
    assert f"EnvironmentFile={machine.env_file}" in unit.splitlines()

    assert mode(machine.env_file) == 0o600
    environment = machine.env_file.read_text().splitlines()
    assert f"FLAMENCO_WORKER_SECRET='{SECRET}'" in environment
    assert "FLAMENCO_WORKER_TAGS='gpu,fast'" in environment
    assert f"PATH='{machine.env['PATH']}'" in environment

    assert machine.systemctl_calls() == [
        "--user daemon-reload",
        "--user enable flamenco-worker.service",
        "--user restart flamenco-worker.service",
    ]
    printed = installed.stderr.splitlines()
    assert "Logs:   journalctl --user -u flamenco-worker -f" in printed
    assert "Stop:   systemctl --user stop flamenco-worker" in printed
    assert "Remove: flamenco service remove worker --user" in printed
    assert SECRET not in installed.stdout + installed.stderr

    verified = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(machine.unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")

    removed = machine.flamenco("service", "remove", "worker", "--user")
    assert removed.returncode == 0, removed.stderr
    assert not machine.unit.exists()
    assert not machine.env_file.exists()
    assert machine.systemctl_calls()[3:] == [
        "--user disable --now flamenco-worker.service",
        "--user daemon-reload",
    ]

    again = machine.flamenco("service", "remove", "worker", "--user")
    assert again.returncode == 1
    assert "No flamenco-worker service is installed for this user" in again.stderr


def test_a_flag_the_worker_does_not_take_is_refused_and_nothing_is_written(
    machine: Machine,
) -> None:
    done = machine.flamenco("service", "install", "--user", "worker", "--manger", "http://x")
    assert done.returncode == 1
    assert "`flamenco worker` refuses these flags: No such option: --manger" in done.stderr
    assert not machine.unit.exists()
    assert not machine.env_file.exists()
    assert machine.systemctl_calls() == []


def test_dry_run_prints_the_unit_with_its_secret_hidden_and_changes_nothing(
    machine: Machine,
) -> None:
    done = machine.flamenco(
        "service", "install", "--user", "--dry-run", "worker", "--secret", SECRET
    )
    assert done.returncode == 0, done.stderr
    assert f"# {machine.unit} (0644)" in done.stdout
    assert "FLAMENCO_WORKER_SECRET='<hidden>'" in done.stdout
    assert "# then: systemctl --user restart flamenco-worker.service" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    assert not machine.unit.exists()
    assert machine.systemctl_calls() == []


def test_a_failing_systemctl_is_reported_in_one_sentence(machine: Machine) -> None:
    machine.env["FAKE_SYSTEMCTL_FAIL"] = "Failed to connect to bus: No medium found"
    done = machine.flamenco("service", "install", "--user", "worker")
    assert done.returncode == 1
    assert (
        "Error: `systemctl --user daemon-reload` failed: Failed to connect to bus: "
        "No medium found." in done.stderr
    )


def test_a_manager_without_its_token_is_refused_and_one_with_it_keeps_it_private(
    machine: Machine,
) -> None:
    refused = machine.flamenco("service", "install", "--user", "manager", "--name", "site-a")
    assert refused.returncode == 1
    assert "The Manager needs its token: --token or FLAMENCO_MANAGER_TOKEN" in refused.stderr
    assert not (machine.root / "config/systemd/user/flamenco-manager.service").exists()

    token = "mgr-token-value"
    installed = machine.flamenco("service", "install", "--user", "manager", "--token", token)
    assert installed.returncode == 0, installed.stderr
    unit = (machine.root / "config/systemd/user/flamenco-manager.service").read_text()
    env_file = machine.root / "config/flamenco/flamenco-manager.env"
    assert token not in unit
    assert f"FLAMENCO_MANAGER_TOKEN='{token}'" in env_file.read_text().splitlines()
    assert mode(env_file) == 0o600


def test_each_gpu_worker_is_a_service_of_its_own(machine: Machine) -> None:
    units = machine.root / "config/systemd/user"
    for gpu in ("0", "1"):
        done = machine.flamenco("service", "install", "--user", "worker", "--gpu", gpu)
        assert done.returncode == 0, done.stderr
        assert f"Remove: flamenco service remove worker --gpu {gpu} --user" in done.stderr
    assert sorted(p.name for p in units.iterdir()) == [
        "flamenco-worker-gpu0.service",
        "flamenco-worker-gpu1.service",
    ]
    assert (
        "Description=Flamenco Worker (GPU 1)"
        in (units / "flamenco-worker-gpu1.service").read_text()
    )

    removed = machine.flamenco("service", "remove", "worker", "--gpu", "0", "--user")
    assert removed.returncode == 0, removed.stderr
    assert [p.name for p in units.iterdir()] == ["flamenco-worker-gpu1.service"]
    assert not (machine.root / "config/flamenco/flamenco-worker-gpu0.env").exists()
    assert (machine.root / "config/flamenco/flamenco-worker-gpu1.env").exists()
