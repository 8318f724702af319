"""`flamenco service install|remove`: the farm's parts as systemd or launchd services.

The text comes from `service_units.py`; this module decides the platform, the scope and the
paths, writes the files (secrets only into a file its owner alone can read) and calls
systemctl or launchctl.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from flamenco.cli.console import err
from flamenco.config import ManagerSettings, load, user_config_dir
from flamenco.service_units import (
    Component,
    Platform,
    ServiceError,
    ServiceName,
    ServicePaths,
    ServiceSpec,
    after_remove_commands,
    environment_file,
    gpu_flag,
    how_to_use,
    is_secret,
    launchd_plist,
    service_paths,
    split_secrets,
    start_commands,
    stop_commands,
    systemd_unit,
)

service_app = typer.Typer(
    help="Install the Server, a Manager or a Worker as a service (systemd, launchd).",
    no_args_is_help=True,
)

# Everything after the component is the component's own flags, passed through to its command
# line in the service: options of `install` itself go before the component.
PASS_THROUGH = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "allow_interspersed_args": False,
}

ComponentArg = Annotated[Component, typer.Argument(help="The part of the farm to run.")]
ScopeOpt = Annotated[
    bool | None,
    typer.Option(
        "--user/--system",
        help="The user's own service (systemd --user, LaunchAgents) or a system-wide one "
        "(/etc/systemd/system, LaunchDaemons). [--system when root, else --user]",
    ),
]


def current_platform() -> Platform:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    raise ServiceError(
        "Services are installed with systemd (Linux) or launchd (macOS); on this system, start "
        "the component with your own service manager instead."
    )


def is_root() -> bool:
    return os.geteuid() == 0


def choose_scope(user: bool | None, needs_root: bool = True) -> bool:
    """True for system-wide: asked for with --system, or by default when run as root."""
    system = is_root() if user is None else not user
    if system and needs_root and not is_root():
        raise ServiceError(
            "A system-wide service needs root: run it with sudo, or use --user for your own."
        )
    return system


def check_account(name: str, system: bool) -> None:
    import pwd

    if not system:
        raise ServiceError("--run-as is for a system-wide service (--system, as root).")
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ServiceError(f"There is no account named {name!r} on this machine.") from None


def paths_for(platform: Platform, service: ServiceName, system: bool) -> ServicePaths:
    return service_paths(platform, service, system, Path.home(), user_config_dir().parent)


def check_component_flags(component: Component, flags: list[str]) -> None:
    """Refuse flags the component would refuse, now rather than in a service that keeps failing."""
    from flamenco.cli.main import app  # the components' commands; main imports this module

    component_command = typer.main.get_command(app).commands[component.value]  # type: ignore[attr-defined]
    try:
        component_command.make_context(component.value, list(flags))
    except typer.TyperException as exc:  # the parser's usage errors (typer's own click)
        reason = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise ServiceError(
            f"`flamenco {component.value}` refuses these flags: {reason.rstrip('.')}; options of "
            "`service install` itself go before the component."
        ) from None


def check_required_settings(component: Component, secrets: dict[str, str]) -> None:
    """A Manager without its token would fail at every start: refuse to install it."""
    if component is Component.manager:
        settings = load(ManagerSettings, {"token": secrets.get("FLAMENCO_MANAGER_TOKEN")})
        if not settings.token:
            raise ServiceError(
                "The Manager needs its token: --token or FLAMENCO_MANAGER_TOKEN (from "
                "`flamenco managers add NAME`); without it the service would fail at every start."
            )


def carried_environment(component: Component) -> dict[str, str]:
    """What configures the component in this shell also configures the service: its
    FLAMENCO_<COMPONENT>_* variables, FLAMENCO_CONFIG, FLAMENCO_CA_BUNDLE (the CA it trusts for
    HTTPS), and PATH (where a Worker finds Blender)."""
    prefix = f"FLAMENCO_{component.value.upper()}_"
    return {
        name: value
        for name, value in sorted(os.environ.items())
        if name.startswith(prefix) or name in ("FLAMENCO_CONFIG", "FLAMENCO_CA_BUNDLE", "PATH")
    }


def service_manager_present(platform: Platform) -> bool:
    return shutil.which("systemctl" if platform == "linux" else "launchctl") is not None


def run_commands(commands: list[list[str]], check: bool = True) -> None:
    for command in commands:
        if shutil.which(command[0]) is None:
            raise ServiceError(
                f"{command[0]} was not found: this machine does not run its service manager "
                "(use --dry-run to see what to install by hand)."
            )
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise ServiceError(
                f"`{' '.join(command)}` failed: {reason[-1] if reason else done.returncode}."
            )


def write_private(path: Path, content: bytes) -> None:
    """Create the file readable by its owner only before anything is in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.replace(temporary, path)


def write_public(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(content)
    temporary.chmod(0o644)
    os.replace(temporary, path)


@contextmanager
def sentences() -> Iterator[None]:
    """A ServiceError or an OS error is one line for the user and exit status 1."""
    try:
        yield
    except (ServiceError, OSError) as exc:
        err.print(f"Error: {exc}", style="red", soft_wrap=True)
        raise typer.Exit(1) from None


def say(line: str) -> None:
    err.print(line, soft_wrap=True)  # never wrapped: each line is copied whole


@service_app.command("install", context_settings=PASS_THROUGH)
def install(
    ctx: typer.Context,
    component: ComponentArg,
    user: ScopeOpt = None,
    run_as: Annotated[
        str | None,
        typer.Option(help="The account a system-wide service runs as (root when not given)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print what would be written and run; change nothing."),
    ] = False,
) -> None:
    """Write the service's unit (Linux) or plist (macOS) and start it.

    The flags after the component are its own, passed to it in the service, e.g.
    `flamenco service install worker --manager URL --secret S`."""
    with sentences():
        platform = current_platform()
        system = choose_scope(user, needs_root=not dry_run)
        if run_as:
            check_account(run_as, system)
        flags = list(ctx.args)
        check_component_flags(component, flags)
        flags, secrets = split_secrets(component, flags)
        environment = {**carried_environment(component), **secrets}
        check_required_settings(component, secrets)
        # A Worker pinned to a GPU is one of several on the machine: a service of its own.
        gpu = gpu_flag(flags) if component is Component.worker else None
        service = ServiceName(component, gpu)
        spec = ServiceSpec(
            service=service,
            # The Python that runs this command, as its path says (a venv's python is a link
            # that must stay one), so the service runs this very installation.
            command=[sys.executable, "-m", "flamenco", component.value, *flags],
            working_dir=Path.cwd(),  # relative folders (the default data folders) as here
            system=system,
            run_as=run_as or "",
            environment=tuple(environment.items()),
        )
        paths = paths_for(platform, service, system)
        files = service_files(platform, spec, paths)
        starting = start_commands(platform, service, system, paths, os.getuid())
        if dry_run:
            print_dry_run(files, starting, spec)
            return
        if platform == "macos" and paths.definition.exists():
            # launchd keeps what it loaded: unload the old definition (if loaded) first.
            run_commands(stop_commands(platform, service, system, os.getuid()), check=False)
        for path, (content, private) in files.items():
            (write_private if private else write_public)(path, content)
        if paths.log is not None:
            paths.log.parent.mkdir(parents=True, exist_ok=True)
        run_commands(starting)
        say(f"Installed and started {service.unit}: {paths.definition}")
        if paths.environment is not None:
            say(f"Its environment and secrets: {paths.environment} (readable by its owner only)")
        for line in how_to_use(platform, service, system, paths, os.getuid()):
            say(line)


def service_files(
    platform: Platform, spec: ServiceSpec, paths: ServicePaths
) -> dict[Path, tuple[bytes, bool]]:
    """Each file to write: its content and whether only its owner may read it."""
    if platform == "linux":
        assert paths.environment is not None
        return {
            paths.environment: (environment_file(spec.environment).encode(), True),
            paths.definition: (systemd_unit(spec, paths.environment).encode(), False),
        }
    assert paths.log is not None
    return {paths.definition: (launchd_plist(spec, paths.log), True)}


def print_dry_run(
    files: dict[Path, tuple[bytes, bool]], commands: list[list[str]], spec: ServiceSpec
) -> None:
    """On stdout, secrets hidden: each file with its path and mode, then the commands."""
    hidden = {value for name, value in spec.environment if is_secret(name) and value}
    for path, (content, private) in files.items():
        text = content.decode()
        for value in hidden:
            text = text.replace(value, "<hidden>")
        print(f"# {path} ({'0600' if private else '0644'})\n{text}")
    for command in commands:
        print(f"# then: {' '.join(command)}")


@service_app.command("remove")
def remove(
    component: ComponentArg,
    user: ScopeOpt = None,
    gpu: Annotated[
        int | None, typer.Option(help="The Worker of this GPU (installed with --gpu N).")
    ] = None,
) -> None:
    """Stop the service and remove its unit or plist (and its environment file)."""
    with sentences():
        platform = current_platform()
        system = choose_scope(user)
        if gpu is not None and component is not Component.worker:
            raise ServiceError("--gpu names one of several Workers; a Server or Manager has none.")
        service = ServiceName(component, gpu)
        paths = paths_for(platform, service, system)
        if not paths.definition.exists():
            raise ServiceError(
                f"No {service.unit} service is installed "
                f"{'system-wide' if system else 'for this user'} ({paths.definition} is missing)."
            )
        # Without systemctl/launchctl nothing can have run from these files: just remove them.
        managed = service_manager_present(platform)
        if managed:
            run_commands(stop_commands(platform, service, system, os.getuid()))
        paths.definition.unlink()
        if paths.environment is not None:
            paths.environment.unlink(missing_ok=True)
        if managed:
            run_commands(after_remove_commands(platform, system))
        say(f"Stopped {service.unit} and removed {paths.definition}.")
