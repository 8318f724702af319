"""The text of a service definition for one part of the farm: a systemd unit, or a launchd plist.

Pure: the caller (`cli/service.py`) passes in the platform, the command line, the folders and
the environment, and does the writing and the systemctl/launchctl calls. So both platforms'
files are generated, and tested, on any machine.
"""

from __future__ import annotations

import plistlib
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

Platform = Literal["linux", "macos"]


class Component(StrEnum):
    server = "server"
    manager = "manager"
    worker = "worker"


# Flags whose value is a secret (or may hold one: a database URL with its password). They never
# go into the world-readable unit; the service gets them from its environment, where `config.py`
# reads them as FLAMENCO_<SECTION>_<NAME>.
SECRET_FLAGS: dict[Component, dict[str, str]] = {
    Component.server: {"--database-url": "FLAMENCO_SERVER_DATABASE_URL"},
    Component.manager: {"--token": "FLAMENCO_MANAGER_TOKEN"},
    Component.worker: {"--secret": "FLAMENCO_WORKER_SECRET"},
}
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "DATABASE_URL")

# How long a stop may take before the service manager kills what is left. A Worker told to stop
# hands its tasks back, gives each Blender 5 s to end (worker/blender.py TERMINATE_GRACE) and
# then delivers what is still queued for up to 5 s (worker/agent.py FINAL_DELIVERY_S): 60 s is
# ample. The Server and Manager end their requests within 3 s (cli/main.py GRACEFUL_SHUTDOWN_S).
STOP_TIMEOUT_S: dict[Component, int] = {
    Component.server: 30,
    Component.manager: 30,
    Component.worker: 60,
}
RESTART_DELAY_S = 10  # launchd's own minimum between launches is 10 s; systemd uses the same
LAUNCHD_LABEL_PREFIX = "org.flamenco."

# Words systemd takes as they are; anything else is quoted (`%` and `$` always need escaping).
PLAIN_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


class ServiceError(ValueError):
    """A service that cannot be described as asked; the message is one sentence for the user."""


@dataclass(frozen=True)
class ServiceSpec:
    """What runs, where, as whom: everything a unit or plist is made of."""

    service: ServiceName
    command: list[str]  # the absolute executable first; no secrets in it
    working_dir: Path
    system: bool  # system-wide (root) rather than for the user who installs it
    run_as: str = ""  # the account of a system-wide service; empty: root
    environment: tuple[tuple[str, str], ...] = ()  # secrets included: kept in a 0600 file


@dataclass(frozen=True)
class ServicePaths:
    definition: Path  # the unit or the plist
    environment: Path | None  # systemd's EnvironmentFile; launchd keeps it in the plist
    log: Path | None  # launchd's log file; systemd logs to the journal


@dataclass(frozen=True)
class ServiceName:
    """Which service: a component, and for a Worker pinned to one GPU, that GPU (one each)."""

    component: Component
    gpu: int | None = None

    @property
    def unit(self) -> str:
        return f"flamenco-{self.instance}"

    @property
    def label(self) -> str:
        return LAUNCHD_LABEL_PREFIX + self.instance

    @property
    def instance(self) -> str:
        own = f"-gpu{self.gpu}" if self.gpu is not None else ""
        return self.component.value + own

    @property
    def title(self) -> str:
        own = f" (GPU {self.gpu})" if self.gpu is not None else ""
        return f"Flamenco {self.component.value.capitalize()}{own}"

    @property
    def cli(self) -> str:
        """How `flamenco service remove` names it."""
        return self.component.value + (f" --gpu {self.gpu}" if self.gpu is not None else "")


def gpu_flag(args: list[str]) -> int | None:
    """The GPU of `--gpu N` (or `--gpu=N`) among a Worker's flags; the last one counts."""
    gpu: int | None = None
    for i, arg in enumerate(args):
        flag, has_value, value = arg.partition("=")
        if flag == "--gpu":
            value = value if has_value else (args[i + 1] if i + 1 < len(args) else "")
            try:
                gpu = int(value)
            except ValueError:
                raise ServiceError(f"--gpu takes a GPU's index, not {value!r}.") from None
    return gpu


def split_secrets(component: Component, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The component's flags without its secret ones, and those as environment variables."""
    secret_flags = SECRET_FLAGS[component]
    kept: list[str] = []
    secrets: dict[str, str] = {}
    rest = iter(args)
    for arg in rest:
        flag, has_value, value = arg.partition("=")
        if flag not in secret_flags:
            kept.append(arg)
            continue
        if not has_value:
            value = next(rest, None)  # type: ignore[assignment]
            if value is None:
                raise ServiceError(f"{flag} needs a value.")
        secrets[secret_flags[flag]] = value
    return kept, secrets


def is_secret(name: str) -> bool:
    return any(word in name for word in SECRET_WORDS)


def service_paths(
    platform: Platform, service: ServiceName, system: bool, home: Path, config_home: Path
) -> ServicePaths:
    """Where the definition (and its environment file or log) go: the places systemd and launchd
    read for system-wide services and for the user's own."""
    name = service.unit
    if platform == "linux":
        if system:
            return ServicePaths(
                Path("/etc/systemd/system") / f"{name}.service",
                Path("/etc/flamenco") / f"{name}.env",
                None,
            )
        return ServicePaths(
            config_home / "systemd" / "user" / f"{name}.service",
            config_home / "flamenco" / f"{name}.env",
            None,
        )
    root = Path("/") if system else home
    folder = "LaunchDaemons" if system else "LaunchAgents"
    return ServicePaths(
        root / "Library" / folder / f"{service.label}.plist",
        None,
        root / "Library" / "Logs" / "Flamenco" / f"{name}.log",
    )


# ---- systemd ------------------------------------------------------------------------------------


def systemd_word(arg: str) -> str:
    """One argument of ExecStart=, so that systemd hands it to the program exactly as given."""
    if PLAIN_WORD.fullmatch(arg):
        return arg
    escaped = "".join(
        C_ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
        for ch in arg
    )
    # Specifiers (%) and variables ($) are expanded everywhere, quoted or not.
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


def systemd_path(path: Path) -> str:
    """A path setting (WorkingDirectory=, EnvironmentFile=): taken as it is, bar specifiers."""
    return str(path).replace("%", "%%")


def systemd_unit(spec: ServiceSpec, environment_file: Path | None) -> str:
    lines = ["[Unit]", f"Description={spec.service.title}"]
    if spec.system:  # a user's manager has no network-online.target of its own
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + " ".join(systemd_word(arg) for arg in spec.command),
        f"WorkingDirectory={systemd_path(spec.working_dir)}",
    ]
    if environment_file is not None:
        lines.append(f"EnvironmentFile={systemd_path(environment_file)}")
    if spec.run_as:
        lines.append(f"User={spec.run_as}")
    lines += [
        f"SyslogIdentifier={spec.service.unit}",
        "Restart=on-failure",
        f"RestartSec={RESTART_DELAY_S}",
        # SIGTERM to the component alone: it stops its own Blenders after handing their tasks
        # back; whatever is left when the timeout ends is killed.
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT_S[spec.service.component]}",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if spec.system else 'default.target'}",
        "",
    ]
    return "\n".join(lines)


def environment_file(environment: tuple[tuple[str, str], ...]) -> str:
    """systemd's EnvironmentFile=: one NAME='value' a line (no expansion inside single quotes)."""
    lines = ["# Written by `flamenco service install`; readable by its owner only."]
    for name, value in environment:
        if "\n" in value or "\r" in value:
            raise ServiceError(f"The value of {name} has a line break; a service cannot take it.")
        double_quoted = '"' + re.sub(r'([\\"`$])', r"\\\1", value) + '"'
        quoted = double_quoted if "'" in value else f"'{value}'"
        lines.append(f"{name}={quoted}")
    return "\n".join(lines) + "\n"


# ---- launchd ------------------------------------------------------------------------------------


def launchd_plist(spec: ServiceSpec, log: Path) -> bytes:
    """A LaunchDaemon/LaunchAgent. Its environment (secrets too) is in the plist itself, which
    is therefore written readable by its owner only."""
    plist: dict[str, object] = {
        "Label": spec.service.label,
        "ProgramArguments": list(spec.command),
        "WorkingDirectory": str(spec.working_dir),
        "EnvironmentVariables": dict(spec.environment),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # started again when it fails, as Restart=
        "ThrottleInterval": RESTART_DELAY_S,
        "ExitTimeOut": STOP_TIMEOUT_S[spec.service.component],  # SIGTERM, then SIGKILL after this
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    }
    if spec.run_as:
        plist["UserName"] = spec.run_as
    return plistlib.dumps(plist, sort_keys=False)


# ---- the commands around it ---------------------------------------------------------------------


def start_commands(
    platform: Platform, service: ServiceName, system: bool, paths: ServicePaths, uid: int
) -> list[list[str]]:
    """Load the new definition and (re)start the service, so that a second install applies."""
    if platform == "linux":
        ctl = systemctl(system)
        unit = f"{service.unit}.service"
        return [[*ctl, "daemon-reload"], [*ctl, "enable", unit], [*ctl, "restart", unit]]
    domain = launchd_domain(system, uid)
    return [["launchctl", "bootstrap", domain, str(paths.definition)]]


def stop_commands(
    platform: Platform, service: ServiceName, system: bool, uid: int
) -> list[list[str]]:
    if platform == "linux":
        return [[*systemctl(system), "disable", "--now", f"{service.unit}.service"]]
    return [["launchctl", "bootout", f"{launchd_domain(system, uid)}/{service.label}"]]


def after_remove_commands(platform: Platform, system: bool) -> list[list[str]]:
    return [[*systemctl(system), "daemon-reload"]] if platform == "linux" else []


def systemctl(system: bool) -> list[str]:
    return ["systemctl"] if system else ["systemctl", "--user"]


def launchd_domain(system: bool, uid: int) -> str:
    return "system" if system else f"gui/{uid}"


def how_to_use(
    platform: Platform, service: ServiceName, system: bool, paths: ServicePaths, uid: int
) -> list[str]:
    """What `install` prints: one line each, to be copied whole."""
    scope = "--system" if system else "--user"
    name = service.unit
    if platform == "linux":
        journal = "journalctl" if system else "journalctl --user"
        lines = [
            f"Logs:   {journal} -u {name} -f",
            f"Stop:   {' '.join(systemctl(system))} stop {name}",
        ]
    else:
        lines = [
            f"Logs:   tail -f {paths.log}",
            f"Stop:   launchctl bootout {launchd_domain(system, uid)}/{service.label}",
        ]
    lines.append(f"Remove: flamenco service remove {service.cli} {scope}")
    if platform == "linux" and not system:
        lines.append("Keep it running after you log out: loginctl enable-linger $USER")
    return lines
