"""The generated systemd units and launchd plists, table by table, and systemd's own verdict.

launchd cannot run here (Linux): the plists are checked by reading them back with plistlib.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flamenco.service_units import (
    Component,
    ServiceError,
    ServiceName,
    ServicePaths,
    ServiceSpec,
    environment_file,
    gpu_flag,
    how_to_use,
    launchd_plist,
    service_paths,
    split_secrets,
    start_commands,
    stop_commands,
    systemd_unit,
    systemd_word,
)

PYTHON = "/opt/flamenco/.venv/bin/python"
PYTHON_HERE = sys.executable  # systemd-analyze checks that the executable exists
AWKWARD_ARGS = ["--name", "box one", "--tags", 'a"b\\c', "--blender", "/x/100%/$HOME/blender"]


def spec(component: Component = Component.worker, **changes: object) -> ServiceSpec:
    fields: dict[str, object] = {
        "service": ServiceName(component),
        "command": [PYTHON, "-m", "flamenco", component.value, *AWKWARD_ARGS],
        "working_dir": Path("/srv/farm"),
        "system": True,
        "environment": (("FLAMENCO_WORKER_SECRET", "s3cret"), ("PATH", "/usr/bin")),
    }
    return ServiceSpec(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arg", "word"),
    [
        ("--manager", "--manager"),
        ("http://h:7777/a,b", "http://h:7777/a,b"),
        ("box one", '"box one"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\path", '"C:\\\\path"'),
        ("100%", '"100%%"'),
        ("$HOME", '"$$HOME"'),
        ("${X}", '"$${X}"'),
        ("two\nlines", '"two\\nlines"'),
        ("tab\there", '"tab\\there"'),
        ("bell\x07", '"bell\\x07"'),
        ("it's", '"it\'s"'),
        ("/opt/my app/python", '"/opt/my app/python"'),
    ],
)
def test_systemd_quotes_each_argument_so_it_arrives_as_given(arg: str, word: str) -> None:
    assert systemd_word(arg) == word


@pytest.mark.parametrize(
    ("component", "args", "kept", "secrets"),
    [
        (
            Component.worker,
            ["--secret", "s", "--name", "n"],
            ["--name", "n"],
            {"FLAMENCO_WORKER_SECRET": "s"},
        ),
        (Component.worker, ["--secret=a=b"], [], {"FLAMENCO_WORKER_SECRET": "a=b"}),
        (Component.worker, ["--name", "n"], ["--name", "n"], {}),
        (
            Component.manager,
            ["--token", "t", "--port", "1"],
            ["--port", "1"],
            {"FLAMENCO_MANAGER_TOKEN": "t"},
        ),
        (Component.manager, ["--name", "secret"], ["--name", "secret"], {}),
        (
            Component.server,
            ["--database-url", "postgresql://u:pw@h/db"],
            [],
            {"FLAMENCO_SERVER_DATABASE_URL": "postgresql://u:pw@h/db"},
        ),
    ],
)
def test_secret_flags_leave_the_command_line_for_the_environment(
    component: Component, args: list[str], kept: list[str], secrets: dict[str, str]
) -> None:
    assert split_secrets(component, args) == (kept, secrets)


def test_a_secret_flag_without_its_value_is_refused() -> None:
    with pytest.raises(ServiceError, match="--secret needs a value"):
        split_secrets(Component.worker, ["--name", "n", "--secret"])


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("plain", "K='plain'"),
        ("with space $HOME \\ `x`", "K='with space $HOME \\ `x`'"),
        ('it\'s $X "q" \\ `c`', 'K="it\'s \\$X \\"q\\" \\\\ \\`c\\`"'),
        ("", "K=''"),
    ],
)
def test_environment_file_lines_keep_values_literal(value: str, line: str) -> None:
    text = environment_file((("K", value),))
    assert text.splitlines()[1:] == [line]


def test_a_value_with_a_line_break_cannot_go_into_an_environment_file() -> None:
    with pytest.raises(ServiceError, match="FLAMENCO_WORKER_SECRET has a line break"):
        environment_file((("FLAMENCO_WORKER_SECRET", "a\nb"),))


HOME = Path("/home/ann")
WORKER = ServiceName(Component.worker)
CONFIG = Path("/home/ann/.config")


@pytest.mark.parametrize(
    ("platform", "system", "expected"),
    [
        (
            "linux",
            True,
            ServicePaths(
                Path("/etc/systemd/system/flamenco-worker.service"),
                Path("/etc/flamenco/flamenco-worker.env"),
                None,
            ),
        ),
        (
            "linux",
            False,
            ServicePaths(
                CONFIG / "systemd/user/flamenco-worker.service",
                CONFIG / "flamenco/flamenco-worker.env",
                None,
            ),
        ),
        (
            "macos",
            True,
            ServicePaths(
                Path("/Library/LaunchDaemons/org.flamenco.worker.plist"),
                None,
                Path("/Library/Logs/Flamenco/flamenco-worker.log"),
            ),
        ),
        (
            "macos",
            False,
            ServicePaths(
                HOME / "Library/LaunchAgents/org.flamenco.worker.plist",
                None,
                HOME / "Library/Logs/Flamenco/flamenco-worker.log",
            ),
        ),
    ],
)
def test_definitions_go_where_systemd_and_launchd_look(
    platform: str, system: bool, expected: ServicePaths
) -> None:
    assert service_paths(platform, WORKER, system, HOME, CONFIG) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("component", "system", "run_as", "expected", "absent"),
    [
        (
            Component.worker,
            True,
            "render",
            [
                "After=network-online.target",
                "User=render",
                "TimeoutStopSec=60",
                "WantedBy=multi-user.target",
            ],
            ["s3cret"],
        ),
        (
            Component.manager,
            False,
            "",
            ["TimeoutStopSec=30", "WantedBy=default.target"],
            ["User=", "network-online", "s3cret"],
        ),
        (Component.server, True, "", ["Description=Flamenco Server"], ["User="]),
    ],
)
def test_systemd_unit_settings(
    component: Component, system: bool, run_as: str, expected: list[str], absent: list[str]
) -> None:
    unit = systemd_unit(spec(component, system=system, run_as=run_as), Path("/etc/flamenco/x.env"))
    lines = unit.splitlines()
    common = [
        "Type=exec",
        "Restart=on-failure",
        "RestartSec=10",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        "WorkingDirectory=/srv/farm",
        "EnvironmentFile=/etc/flamenco/x.env",
        f"SyslogIdentifier=flamenco-{component.value}",
    ]
    for line in common + expected:
        assert line in lines
    for text in absent:
        assert text not in unit
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert exec_start == (
        f'ExecStart={PYTHON} -m flamenco {component.value} --name "box one" --tags '
        '"a\\"b\\\\c" --blender "/x/100%%/$$HOME/blender"'
    )


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is missing: install Debian's systemd package "
            "(scripts/test does, as root) to check the generated units."
        )
    return found


@pytest.mark.parametrize("system", [True, False], ids=["system", "user"])
def test_systemd_accepts_the_generated_units(tmp_path: Path, system: bool) -> None:
    """`systemd-analyze verify` exits 0 on settings it ignores, so any message is a failure."""
    work = tmp_path / "farm dir"
    work.mkdir()
    env_file = tmp_path / "flamenco-worker.env"
    env_file.write_text(environment_file(spec().environment))
    for component in Component:
        command = [PYTHON_HERE, "-m", "flamenco", component.value]
        unit = systemd_unit(
            spec(component, command=command + AWKWARD_ARGS, system=system, working_dir=work),
            env_file,
        )
        path = tmp_path / f"flamenco-{component.value}.service"
        path.write_text(unit)
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        scope = [] if system else ["--user"]
        done = subprocess.run(
            [systemd_analyze(), *scope, "verify", "--man=no", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
            timeout=60,
        )
        assert (done.returncode, done.stdout + done.stderr) == (0, ""), unit


def test_systemd_refuses_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: an unbalanced quote is reported."""
    path = tmp_path / "flamenco-worker.service"
    unit = systemd_unit(spec(command=[PYTHON_HERE, "x"]), None)
    path.write_text(unit.replace(f"{PYTHON_HERE} x", f'{PYTHON_HERE} "x'))
    done = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Unbalanced quoting" in done.stderr


@pytest.mark.parametrize(
    ("system", "run_as", "extra"),
    [(True, "render", {"UserName": "render"}), (False, "", {})],
)
def test_launchd_plist_reads_back_as_given(
    system: bool, run_as: str, extra: dict[str, str]
) -> None:
    log = Path("/Users/ann/Library/Logs/Flamenco/flamenco-worker.log")
    given = spec(system=system, run_as=run_as)
    plist = plistlib.loads(launchd_plist(given, log))
    assert plist == {
        "Label": "org.flamenco.worker",
        "ProgramArguments": given.command,  # one array item per argument: no quoting at all
        "WorkingDirectory": "/srv/farm",
        "EnvironmentVariables": {"FLAMENCO_WORKER_SECRET": "s3cret", "PATH": "/usr/bin"},
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ExitTimeOut": 60,
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
        **extra,
    }


PATHS = ServicePaths(Path("/u/org.flamenco.worker.plist"), None, Path("/u/worker.log"))


@pytest.mark.parametrize(
    ("platform", "system", "start", "stop"),
    [
        (
            "linux",
            True,
            [
                ["systemctl", "daemon-reload"],
                ["systemctl", "enable", "flamenco-worker.service"],
                ["systemctl", "restart", "flamenco-worker.service"],
            ],
            [["systemctl", "disable", "--now", "flamenco-worker.service"]],
        ),
        (
            "linux",
            False,
            [
                ["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", "flamenco-worker.service"],
                ["systemctl", "--user", "restart", "flamenco-worker.service"],
            ],
            [["systemctl", "--user", "disable", "--now", "flamenco-worker.service"]],
        ),
        (
            "macos",
            True,
            [["launchctl", "bootstrap", "system", str(PATHS.definition)]],
            [["launchctl", "bootout", "system/org.flamenco.worker"]],
        ),
        (
            "macos",
            False,
            [["launchctl", "bootstrap", "gui/501", str(PATHS.definition)]],
            [["launchctl", "bootout", "gui/501/org.flamenco.worker"]],
        ),
    ],
)
def test_service_manager_commands(
    platform: str, system: bool, start: list[list[str]], stop: list[list[str]]
) -> None:
    assert start_commands(platform, WORKER, system, PATHS, 501) == start  # type: ignore[arg-type]
    assert stop_commands(platform, WORKER, system, 501) == stop  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("platform", "system", "lines"),
    [
        (
            "linux",
            False,
            [
                "Logs:   journalctl --user -u flamenco-worker -f",
                "Stop:   systemctl --user stop flamenco-worker",
                "Remove: flamenco service remove worker --user",
                "Keep it running after you log out: loginctl enable-linger $USER",
            ],
        ),
        (
            "linux",
            True,
            [
                "Logs:   journalctl -u flamenco-worker -f",
                "Stop:   systemctl stop flamenco-worker",
                "Remove: flamenco service remove worker --system",
            ],
        ),
        (
            "macos",
            False,
            [
                "Logs:   tail -f /u/worker.log",
                "Stop:   launchctl bootout gui/501/org.flamenco.worker",
                "Remove: flamenco service remove worker --user",
            ],
        ),
    ],
)
def test_how_to_read_logs_and_stop(platform: str, system: bool, lines: list[str]) -> None:
    assert how_to_use(platform, WORKER, system, PATHS, 501) == lines  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "gpu"),
    [
        (["--name", "n"], None),
        (["--gpu", "1"], 1),
        (["--gpu=2", "--name", "n"], 2),
        (["--gpu", "0", "--gpu", "3"], 3),
    ],
)
def test_the_gpu_of_a_worker_from_its_flags(args: list[str], gpu: int | None) -> None:
    assert gpu_flag(args) == gpu


@pytest.mark.parametrize(
    ("service", "unit", "label", "title", "cli"),
    [
        (WORKER, "flamenco-worker", "org.flamenco.worker", "Flamenco Worker", "worker"),
        (
            ServiceName(Component.worker, 1),
            "flamenco-worker-gpu1",
            "org.flamenco.worker-gpu1",
            "Flamenco Worker (GPU 1)",
            "worker --gpu 1",
        ),
        (
            ServiceName(Component.manager),
            "flamenco-manager",
            "org.flamenco.manager",
            "Flamenco Manager",
            "manager",
        ),
    ],
)
def test_one_service_per_gpu_worker(
    service: ServiceName, unit: str, label: str, title: str, cli: str
) -> None:
    assert (service.unit, service.label, service.title, service.cli) == (unit, label, title, cli)
    linux = service_paths("linux", service, True, HOME, CONFIG)
    assert linux.definition == Path(f"/etc/systemd/system/{unit}.service")
    assert linux.environment == Path(f"/etc/flamenco/{unit}.env")
    mac = service_paths("macos", service, False, HOME, CONFIG)
    assert mac.definition == HOME / f"Library/LaunchAgents/{label}.plist"
    lines = how_to_use("linux", service, True, linux, 0)
    assert f"Remove: flamenco service remove {cli} --system" in lines
