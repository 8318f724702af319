"""People and credentials from the command line: `flamenco tokens`, `users add|passwd|remove`,
`managers add|list|revoke|rotate|rotate-secret`. Each acts through the Server's API
(server/auth.py), except rotate-secret, which acts on a Manager's data folder on this machine."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from flamenco import wire
from flamenco.cli.base import (
    JsonOpt,
    ServerOpt,
    app,
    client,
    friendly_errors,
    managers_app,
    print_json_list,
    users_app,
)
from flamenco.cli.console import err, listing, out
from flamenco.client import api_path
from flamenco.config import ManagerSettings, load
from flamenco.manager.join_secret import new_join_secret, secret_file, write_join_secret

tokens_app = typer.Typer(help="Your login tokens: list and revoke them.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")

MIN_PASSWORD = 8  # as the Server's wire.PasswordChange


def _moment(value: datetime | None, none: str) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else none


@tokens_app.command("list")
@friendly_errors
def tokens_list(
    everyone: Annotated[
        bool, typer.Option("--all", help="Every user's tokens (administrators).")
    ] = False,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Your tokens that still work (the one in use marked *): id, label, dates."""
    path = "/api/v1/tokens?all=true" if everyone else "/api/v1/tokens"
    tokens = client(server).call("GET", path, wire.TokenList).root
    if as_json:
        print_json_list(tokens)
        return
    table = listing("=id", "user", "label", "created", "expires", "last used")
    for t in tokens:
        table.add_row(
            f"{t.id}{' *' if t.current else ''}",
            t.user,
            t.label,
            _moment(t.created, ""),
            _moment(t.expires, "never"),
            _moment(t.last_used, "never"),
        )
    out.print(table)


@tokens_app.command("revoke")
@friendly_errors
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="From `flamenco tokens list`.")],
    server: ServerOpt = None,
) -> None:
    """Revoke a token at once: its next use is refused (yours, or anyone's for an admin)."""
    client(server).request("DELETE", api_path("tokens", str(token_id)))
    err.print(f"Token {token_id} revoked.")


def _new_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(
            f"New password for {name}", hide_input=True, confirmation_prompt=True
        )
    _check_length(password)
    return password


def _check_length(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"The password needs at least {MIN_PASSWORD} characters.")


@users_app.command("add")
@friendly_errors
def users_add(
    name: Annotated[str, typer.Argument(help="The new user's login name.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="May manage users, sites, Workers.")
    ] = False,
    password: Annotated[
        str | None, typer.Option(help="The password; asked for when not given.")
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Add a user who can log in to the Dashboard and use the API (administrators only)."""
    if password is None:
        password = typer.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    _check_length(password)
    body = {"name": name, "password": password, "admin": admin}
    client(server).request("POST", "/api/v1/users", json=body)
    err.print(f"User '{name}' added{' as an administrator' if admin else ''}.")


@users_app.command("passwd")
@friendly_errors
def users_passwd(
    name: Annotated[str, typer.Argument(help="The user; yours, or anyone's for an admin.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin's first line.")
    ] = False,
    server: ServerOpt = None,
) -> None:
    """Change a user's password; their other tokens are revoked (not the one you use)."""
    password = _new_password(name, password_stdin)
    change = wire.PasswordChange(password=password)
    client(server).request(
        "PUT", api_path("users", name, "password"), json=change.model_dump(mode="json")
    )
    err.print(f"Password of '{name}' changed; their other tokens are revoked.")


@users_app.command("remove")
@friendly_errors
def users_remove(
    name: Annotated[str, typer.Argument(help="The user to remove.")],
    server: ServerOpt = None,
) -> None:
    """Remove a user and revoke their tokens (administrators; never the last one)."""
    client(server).request("DELETE", api_path("users", name))
    err.print(f"User '{name}' removed; their tokens are revoked.")


@managers_app.command("add")
@friendly_errors
def managers_add(name: str, server: ServerOpt = None) -> None:
    """Register a Manager on the Server and print its token."""
    issued = client(server).call(
        "POST", "/api/v1/managers", wire.TokenIssued, wire.ManagerCreate(name=name)
    )
    err.print(
        f"Manager '{name}' added. Start it with: flamenco manager --name {name} "
        "--token TOKEN --server URL"
    )
    print(issued.token)


@managers_app.command("list")
@friendly_errors
def managers_list(server: ServerOpt = None, as_json: JsonOpt = False) -> None:
    """Every Manager (site), whether it is online, and what its Workers do."""
    managers = client(server).call("GET", "/api/v1/managers", wire.ManagerList).root
    if as_json:
        print_json_list(managers)
        return
    table = listing("site", "=state", "address", "workers")
    for m in managers:
        workers = "\n".join(
            f"{w.name}: {w.status}" + (f", task {w.task_id}" if w.task_id else "")
            for w in m.workers
        )
        table.add_row(m.name, m.status, m.address, workers or "none")
    out.print(table)


@managers_app.command("revoke")
@friendly_errors
def managers_revoke(name: str, server: ServerOpt = None) -> None:
    """Revoke a Manager's token at once; `managers rotate` gives it a new one."""
    client(server).request("POST", api_path("managers", name, "revoke"))
    err.print(f"The token of Manager '{name}' is revoked; the Server refuses it from now on.")


@managers_app.command("rotate")
@friendly_errors
def managers_rotate(name: str, server: ServerOpt = None) -> None:
    """Replace a Manager's token: prints the new one once; the old one stops working now."""
    issued = client(server).call("POST", api_path("managers", name, "rotate"), wire.TokenIssued)
    err.print(
        f"Manager '{name}' has a new token; its old one no longer works. Restart the Manager "
        "with it (--token or FLAMENCO_MANAGER_TOKEN)."
    )
    print(issued.token)


@managers_app.command("rotate-secret")
@friendly_errors
def managers_rotate_secret(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="The Manager's data folder on this machine \\[its configured one]."),
    ] = None,
) -> None:
    """Give the Manager on this machine a new join secret; prints it once. Joined Workers keep
    working; new ones need the new secret. The running Manager takes it without a restart."""
    settings = load(ManagerSettings, {"data_dir": data_dir})
    if settings.secret:
        raise ValueError(
            "This Manager's join secret is configured (FLAMENCO_MANAGER_SECRET or [manager] "
            "secret), which outranks its data folder; change it there and restart the Manager."
        )
    folder = settings.data_dir
    if not secret_file(folder).exists():
        raise FileNotFoundError(
            f"There is no Manager's join-secret in {folder}; give its --data-dir."
        )
    secret = new_join_secret()
    write_join_secret(folder, secret)
    _follow_in_farm_toml(folder, secret)
    err.print(f"The join secret in {secret_file(folder)} is replaced; new Workers join with:")
    print(secret)


def _follow_in_farm_toml(manager_dir: Path, secret: str) -> None:
    """The Manager of `flamenco up` (its data folder beside farm.toml): farm.toml keeps its
    worker_secret, from which up seeds the Manager at every start."""
    from flamenco.cli.up import FarmSecrets, bootstrap, save_farm_secrets

    farm_dir = manager_dir.absolute().parent
    if manager_dir.absolute().name != "manager" or not (farm_dir / "farm.toml").exists():
        return
    farm: FarmSecrets = bootstrap(farm_dir)  # reads the existing farm.toml
    farm.worker_secret = secret
    save_farm_secrets(farm_dir, farm)
    err.print(f"{farm_dir / 'farm.toml'} has it too.")
