"""A real farm (Server, Manager, two Workers) with a Dashboard, and Debian's Chromium.

Chromium missing is a failure, never a skip: `scripts/test` installs it (apt) where it can.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Page

from farmkit import Proc, TestFarm
from flamenco import wire

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class DashboardFarm:
    farm: TestFarm
    url: str
    proc: Proc

    @property
    def password(self) -> str:
        assert self.farm.secrets is not None
        return self.farm.secrets.admin_password


def start_dashboard(farm: TestFarm) -> tuple[str, Proc]:
    return farm.start_dashboard()


def submit_fake_job(
    farm: TestFarm, tmp: Path, name: str = "fake", frames: str = "1-3", priority: int = 50
) -> wire.Job:
    """A job whose scene only looks like a .blend: enough for the Server, never rendered."""
    scene = tmp / "scene.blend"
    scene.write_bytes(b"BLENDER-v405REND" + bytes(200))
    sha = hashlib.sha256(scene.read_bytes()).hexdigest()
    api = farm.api()
    api.upload_blob(scene, sha)
    sub = wire.JobSubmission(
        name=name,
        files={"s.blend": sha},
        settings={"blend": "s.blend", "frames": frames},
        priority=priority,
    )
    return api.call("POST", "/api/v1/jobs", wire.Job, sub)


def as_manager(farm: TestFarm, method: str, path: str, **kwargs: object) -> httpx.Response:
    """A request to the farm's Server with its Manager's token (a test playing the Manager)."""
    assert farm.secrets is not None
    headers = {"Authorization": f"Bearer {farm.secrets.manager_token}"}
    headers |= kwargs.pop("headers", {})  # type: ignore[arg-type]
    answer = httpx.request(
        method, f"{farm.server_url}{path}", headers=headers, timeout=30, **kwargs
    )
    assert answer.is_success, answer.text
    return answer


def put_file(farm: TestFarm, path: str, data: bytes, **params: str) -> None:
    """PUT a frame or artifact of a task as its Manager does: with its hash."""
    sha = {"X-Flamenco-SHA256": hashlib.sha256(data).hexdigest()}
    as_manager(farm, "PUT", path, content=data, headers=sha, params=params)


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    """Keep a picture of a page in test-artifacts/dashboard/ (CI keeps that folder)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def log_in(page: Page, dash: DashboardFarm, target: str = "/") -> None:
    page.goto(target)
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", dash.password)
    page.click("button[type=submit]")
    page.wait_for_selector("header.topbar")
