"""Credentials on a whole farm of real processes: a Manager's join secret is rotated while a
joined Worker keeps rendering; the farm's logs never hold a secret; files with secrets are 0600."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm, wait_until
from flamenco import wire
from flamenco.cli.up import bootstrap
from flamenco.manager.join_secret import read_join_secret, secret_file, write_join_secret

pytestmark = pytest.mark.blender

REFUSED_SECRET = "The join secret is wrong or was replaced; use this Manager's current one."
NO_CONFIGURED_SECRET = {"FLAMENCO_MANAGER_SECRET": ""}  # the data folder's join-secret counts


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def worker_online(farm: TestFarm, name: str) -> bool:
    managers = farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root
    return any(w.name == name and w.status != "offline" for m in managers for w in m.workers)


def test_a_rotated_join_secret_keeps_joined_workers_refuses_the_old_one_and_no_log_has_a_secret(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    assert farm.secrets is not None
    manager_dir = farm.root / "manager-local"
    write_join_secret(manager_dir, farm.secrets.worker_secret)  # as `flamenco up` seeds it
    farm.start_manager("local", env=NO_CONFIGURED_SECRET)
    old_secret = farm.secrets.worker_secret
    farm.start_worker("joined-before")
    wait_until(lambda: worker_online(farm, "joined-before"), 120, "the first Worker online")

    rotated = farm.cli(
        "managers", "rotate-secret", "--data-dir", str(manager_dir), env=NO_CONFIGURED_SECRET
    )
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip()
    assert new_secret and new_secret != old_secret
    assert read_join_secret(manager_dir) == new_secret and mode(secret_file(manager_dir)) == 0o600

    # The running Manager refuses the old secret at once, with a sentence; a Worker that
    # starts with it says so and exits.
    register = f"{farm.manager_url}/api/v1/workers/register"
    old = httpx.post(register, json={"name": "late", "platform": "t", "secret": old_secret})
    assert (old.status_code, old.json()["detail"]) == (401, REFUSED_SECRET)
    late = farm.start_worker("late")  # FLAMENCO_WORKER_SECRET: the old one
    wait_until(lambda: not late.alive(), 120, "the Worker with the old secret to give up")
    assert late.popen.returncode == 1 and f"Error (401): {REFUSED_SECRET}" in late.output()

    # The Worker that joined before renders with its own token.
    done = farm.cli("submit", str(demo_scene), "--frames", "1-2", "--wait", "--json")
    assert done.returncode == 0, done.stderr + farm.logs()
    job = wire.Job.model_validate_json(done.stdout)
    assert job.status == "completed"
    assert {t.worker for t in farm.tasks(job.id)} == {"joined-before"}

    farm.start_worker("joined-after", env={"FLAMENCO_WORKER_SECRET": new_secret})
    wait_until(lambda: worker_online(farm, "joined-after"), 120, "the new Worker online")

    # A user who logs in and out of the Dashboard, so that its logs had a chance too.
    dashboard, _ = farm.start_dashboard()
    with httpx.Client(base_url=dashboard, timeout=10) as browser:
        form = f"username=admin&password={farm.secrets.admin_password}"
        headers = {"content-type": "application/x-www-form-urlencoded"}
        assert browser.post("/login", content=form, headers=headers).status_code == 303
        assert browser.post("/logout").status_code == 303
    login = farm.api("").call(
        "POST",
        "/api/v1/login",
        wire.TokenIssued,
        wire.LoginRequest(username="admin", password=farm.secrets.admin_password),
    )

    worker_files = [farm.root / name / "worker.json" for name in ("joined-before", "joined-after")]
    for private in [farm.root / "farm.toml", secret_file(manager_dir), *worker_files]:
        assert mode(private) == 0o600, private
    secrets = {
        "admin password": farm.secrets.admin_password,
        "admin token": farm.secrets.admin_token,
        "login token": login.token,
        "Manager token": farm.secrets.manager_token,
        "old join secret": old_secret,
        "new join secret": new_secret,
        **{f"token of {f.parent.name}": json.loads(f.read_text())["token"] for f in worker_files},
    }
    farm.stop_all()  # every log complete
    logs = sorted((farm.root / "logs").glob("*.log"))
    assert {log.stem for log in logs} >= {"server", "manager-local", "dashboard", "late"}
    for log in logs:
        text = log.read_text(errors="replace")
        found = [what for what, secret in secrets.items() if secret in text]
        assert not found, f"{log.name} holds the {', '.join(found)}"


def test_rotate_secret_of_ups_manager_keeps_farm_toml_in_step(farm: TestFarm) -> None:
    """`flamenco up` starts its Manager with farm.toml's worker_secret: a rotation of its data
    folder must change farm.toml too, or the next `up` would bring the old secret back."""
    root = farm.root / "up-farm"
    farm.secrets = secrets = bootstrap(root)  # farm.cli's token; no Server is needed
    write_join_secret(root / "manager", secrets.worker_secret)
    rotated = farm.cli(
        "managers", "rotate-secret", "--data-dir", str(root / "manager"), env=NO_CONFIGURED_SECRET
    )
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip()
    assert bootstrap(root).worker_secret == new_secret == read_join_secret(root / "manager")
    assert bootstrap(root).admin_token == secrets.admin_token  # the rest is kept
    assert mode(root / "farm.toml") == 0o600

    configured = farm.cli(
        "managers",
        "rotate-secret",
        "--data-dir",
        str(root / "manager"),
        env={"FLAMENCO_MANAGER_SECRET": "set-by-the-operator"},
    )
    assert configured.returncode == 1
    assert "join secret is configured (FLAMENCO_MANAGER_SECRET" in configured.stderr
    assert read_join_secret(root / "manager") == new_secret
    missing = farm.cli(
        "managers",
        "rotate-secret",
        "--data-dir",
        str(farm.root / "nowhere"),
        env=NO_CONFIGURED_SECRET,
    )
    assert missing.returncode == 1 and "There is no Manager's join-secret in" in missing.stderr
