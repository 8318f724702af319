"""`flamenco tokens|users|managers` against a real Server (and Manager) process: credentials
are listed, revoked, replaced and expire, and each one that ended is refused with a 401 that
says so, which the CLI prints before exiting non-zero."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx

from farmkit import Proc, TestFarm, wait_until
from flamenco import wire

REVOKED = re.compile(r"Error \(401\): This token was revoked on \d{4}-\d\d-\d\d \d\d:\d\d UTC")


def login(farm: TestFarm, name: str, password: str) -> str:
    request = wire.LoginRequest(username=name, password=password)
    return farm.api("").call("POST", "/api/v1/login", wire.TokenIssued, request).token


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


def refused(result: subprocess.CompletedProcess[str], sentence: str | re.Pattern[str]) -> None:
    assert result.returncode == 1, result.stdout
    if isinstance(sentence, str):
        assert sentence in result.stderr, result.stderr
    else:
        assert sentence.search(result.stderr), result.stderr


def test_tokens_are_listed_and_revoked_and_a_revoked_one_says_so(farm: TestFarm) -> None:
    farm.start_server()
    ok(farm.cli("users", "add", "bob", "--password", "bob-secret-1"))
    bob = login(farm, "bob", "bob-secret-1")
    as_bob = {"FLAMENCO_TOKEN": bob}

    mine = ok(farm.cli("tokens", "list", "--json"))
    (admins,) = wire.TokenList.model_validate_json(mine.stdout).root
    assert (admins.user, admins.label, admins.current, admins.expires) == (
        "admin",
        "flamenco up",
        True,
        None,
    )
    table = ok(farm.cli("tokens", "list", env=as_bob)).stdout
    assert "bob" in table and "login" in table and "admin" not in table
    refused(farm.cli("tokens", "list", "--all", env=as_bob), "Only an administrator can list")
    everyone = ok(farm.cli("tokens", "list", "--all", "--json")).stdout
    bobs = next(t for t in wire.TokenList.model_validate_json(everyone).root if t.user == "bob")
    assert bobs.expires is not None and bobs.last_used is not None

    refused(farm.cli("tokens", "revoke", str(admins.id), env=as_bob), f"no token {admins.id}")
    assert "Token" in ok(farm.cli("tokens", "revoke", str(bobs.id))).stderr
    refused(farm.cli("jobs", "list", env=as_bob), REVOKED)
    refused(farm.cli("tokens", "revoke", str(bobs.id)), "(409): Token")
    refused(
        farm.cli("jobs", "list", env={"FLAMENCO_TOKEN": "flu_never-issued"}),
        "Error (401): This token is not known to this Server",
    )


def test_a_token_expires_after_token_ttl_days(farm: TestFarm) -> None:
    farm.start_server(env={"FLAMENCO_SERVER_TOKEN_TTL_DAYS": "0.00006"})  # 5.2 s
    token = login(farm, "admin", farm.secrets.admin_password)  # type: ignore[union-attr]
    # Used at once over HTTP: a CLI's start-up on a loaded machine could outlast the token.
    bearer = {"Authorization": f"Bearer {token}"}
    fresh = httpx.get(f"{farm.server_url}/api/v1/jobs", headers=bearer)
    assert fresh.status_code == 200, fresh.text
    expired = wait_until(
        lambda: (r := farm.cli("jobs", "list", env={"FLAMENCO_TOKEN": token})).returncode and r,
        30,
        "the login token to expire",
        every=0.5,
    )
    refused(expired, re.compile(r"Error \(401\): This token expired on .* UTC; log in again\."))
    ok(farm.cli("jobs", "list"))  # the farm's own token (flamenco up's) does not expire


def test_passwd_and_remove_revoke_the_users_tokens_but_never_remove_the_last_admin(
    farm: TestFarm,
) -> None:
    farm.start_server()
    ok(farm.cli("users", "add", "bob", "--password", "bob-secret-1"))
    bob = login(farm, "bob", "bob-secret-1")
    other = login(farm, "bob", "bob-secret-1")
    as_bob = {"FLAMENCO_TOKEN": bob}

    short = subprocess_input(farm, ["users", "passwd", "bob", "--password-stdin"], "short\n")
    refused(short, "at least 8 characters")
    refused(
        subprocess_input(farm, ["users", "passwd", "admin", "--password-stdin"], "x" * 9, as_bob),
        "Error (403): Only an administrator can change another user's password.",
    )
    ok(subprocess_input(farm, ["users", "passwd", "bob", "--password-stdin"], "new-pass-1", as_bob))
    ok(farm.cli("jobs", "list", env=as_bob))  # the token that made the change still works
    refused(farm.cli("jobs", "list", env={"FLAMENCO_TOKEN": other}), REVOKED)
    assert login(farm, "bob", "new-pass-1")

    refused(farm.cli("users", "remove", "admin", env=as_bob), "Error (403)")
    refused(
        farm.cli("users", "remove", "admin"),
        "Error (409): 'admin' is the last administrator and cannot be removed",
    )
    ok(farm.cli("users", "remove", "bob"))
    refused(farm.cli("jobs", "list", env=as_bob), REVOKED)
    refused(farm.cli("users", "remove", "bob"), "Error (404): There is no user named 'bob'.")


def subprocess_input(
    farm: TestFarm, args: list[str], stdin: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`farm.cli` with text on stdin."""
    full_env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(farm.config_home),
        "FLAMENCO_SERVER": farm.server_url,
        "FLAMENCO_TOKEN": farm.token,
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "flamenco", *args],
        input=stdin,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_rotated_or_revoked_manager_token_is_refused_with_a_sentence(farm: TestFarm) -> None:
    farm.start_server()
    farm.start_manager("local")
    handle = farm.managers["local"]
    wait_until(lambda: farm.manager_online("local"), 30, "the Manager online")

    rotated = ok(farm.cli("managers", "rotate", "local"))
    new_token = rotated.stdout.strip()
    assert new_token.startswith("flm_") and "old one no longer works" in rotated.stderr
    sync = httpx.post(
        f"{farm.server_url}/api/v1/manager/sync",
        json={},
        headers={"Authorization": f"Bearer {handle.token}"},
    )
    assert sync.status_code == 401
    assert sync.json()["detail"].startswith("This token of Manager 'local' was replaced on ")
    wait_until(
        lambda: (
            "the Server refuses this Manager's token: This token of Manager 'local' was "
            "replaced" in handle.proc.output()
        ),
        30,
        "the running Manager to log the refusal",
    )
    # The operator restarts it with the new token: online again.
    handle.proc.stop()
    env = {**handle.proc.env, "FLAMENCO_MANAGER_TOKEN": new_token}
    was = len(handle.proc.output())
    again = Proc(handle.proc.label, handle.proc.args, env, handle.proc.log)
    farm.procs.append(again)
    wait_until(
        lambda: "connected to the Server" in again.output()[was:],
        60,
        "the Manager back with its new token",
    )

    ok(farm.cli("managers", "revoke", "local"))
    wait_until(
        lambda: (
            "the Server refuses this Manager's token: The token of Manager 'local' was "
            "revoked on " in again.output()
        ),
        30,
        "the Manager to log its revoked token",
    )
    listed = ok(farm.cli("managers", "list", "--json")).stdout
    assert [m.status for m in wire.ManagerList.model_validate_json(listed).root] == ["revoked"]
    refused(farm.cli("managers", "revoke", "local"), "(409)")
    refused(farm.cli("managers", "rotate", "nowhere"), "(404): There is no Manager named")
