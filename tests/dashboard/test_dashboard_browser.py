"""The Dashboard in Debian's Chromium, against a real farm that renders with real Blender."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest
from dashkit import DashboardFarm, log_in, screenshot
from playwright.sync_api import Page, expect

from exrkit import exr_scene
from farmkit import process_gone, wait_until
from flamenco.worker.blender import BlenderInstall

pytestmark = pytest.mark.blender


def submit(dash: DashboardFarm, scene: Path, frames: str, chunk: int, name: str) -> str:
    args = ["--frames", frames, "--chunk", str(chunk), "--name", name, "--json"]
    done = dash.farm.cli("submit", str(scene), *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def test_a_wrong_password_is_refused(page: Page, dash: DashboardFarm) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    screenshot(page, "login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("The user name or password is wrong.")
    assert page.context.cookies() == []
    page.goto("/machines")
    expect(page).to_have_url(re.compile(r"/login"))


def test_a_submitted_job_appears_and_completes_without_a_reload(
    page: Page, dash: DashboardFarm, demo_scene: Path
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    log_in(page, dash)
    # The API token stays in the Dashboard: not in the page, not in a cookie scripts can read.
    assert page.evaluate("document.cookie") == ""
    assert "flu_" not in page.content()
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#live")).to_have_text("live")

    job_id = submit(dash, demo_scene, "1-10", 2, "dashboard live")
    row = page.locator(f"tr[data-id='{job_id}']")
    expect(row).to_be_visible()
    expect(row.locator(".pct")).to_have_text("100%", timeout=180_000)
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row.locator(".frames")).to_have_text("10 / 10")
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "jobs")
    assert requested and all(url.startswith(dash.url) for url in requested), requested


def test_an_exr_job_shows_its_format_thumbnails_and_frames_in_the_viewer(
    page: Page,
    dash: DashboardFarm,
    demo_scene: Path,
    blender_install: BlenderInstall,
    tmp_path: Path,
) -> None:
    scene = exr_scene(blender_install, demo_scene, tmp_path / "studio" / "shot.blend")
    job_id = submit(dash, scene, "1-2", 2, "dashboard exr")
    assert dash.farm.wait_job(job_id).status == "completed", dash.farm.logs()
    log_in(page, dash, f"/jobs/{job_id}")
    expect(page.locator(".thumb")).to_have_count(2)
    expect(page.locator(".job-format .value")).to_have_text("from the scene (.exr)")
    thumb = page.locator(".thumb img").first
    wait_until(lambda: thumb.evaluate("i => i.complete && i.naturalWidth") == 96, 10, "thumb")

    page.locator(".thumb").first.click()
    image = page.locator("#viewer-img")
    expect(image).to_have_attribute("src", re.compile(rf"/ui/jobs/{job_id}/frames/1/view\?v="))
    # Drawn by the browser: a JPEG of the EXR's beauty, full size.
    wait_until(lambda: image.evaluate("i => i.complete && i.naturalWidth") == 96, 10, "frame 1")
    screenshot(page, "viewer-exr", full_page=False)
    # "Open" still gives the frame itself, the EXR Blender wrote.
    original = page.request.get(page.locator("#viewer-open").get_attribute("href") or "")
    assert original.ok and original.body()[:4] == b"\x76\x2f\x31\x01"


@pytest.fixture(scope="module")
def rendered_job(dash: DashboardFarm, demo_scene: Path) -> str:
    job_id = submit(dash, demo_scene, "1-4", 1, "dashboard frames")
    assert dash.farm.wait_job(job_id).status == "completed", dash.farm.logs()
    return job_id


def test_the_job_page_shows_frames_full_size_the_log_timeline_and_zip(
    page: Page, dash: DashboardFarm, rendered_job: str
) -> None:
    log_in(page, dash, f"/jobs/{rendered_job}")
    expect(page.locator(".thumb")).to_have_count(4)
    expect(page.locator("#tasks-body tr")).to_have_count(4)
    expect(page.locator("#tasks-body .badge").first).to_have_text("completed")
    expect(page.locator("#timeline rect.tl-run")).to_have_count(4)
    expect(page.locator(".job-format .value")).to_have_text("from the scene (.png)")
    # The first task loaded the scene into that Worker's Blender, which then stayed warm.
    page.locator("#tasks-body tr").first.locator(".show-log").click()
    expect(page.locator("#log")).to_contain_text("Read blend")
    expect(page.locator("#log")).to_contain_text("Saved:")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "job")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "job-dark")
    page.emulate_media(color_scheme="light")

    page.locator(".thumb").first.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    image = page.locator("#viewer-img")
    # A PNG frame is shown as it is (the view of a frame browsers draw is the frame).
    expect(image).to_have_attribute(
        "src", re.compile(rf"/ui/jobs/{rendered_job}/frames/1/view\?v=")
    )
    wait_until(lambda: image.evaluate("i => i.complete && i.naturalWidth") == 96, 10, "frame 1")
    expect(page.locator("#viewer-title")).to_contain_text("Frame 1")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-title")).to_contain_text("Frame 2")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#viewer-title")).to_contain_text("Frame 2")
    screenshot(page, "viewer", full_page=False)
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    archive = page.request.get(f"/ui/jobs/{rendered_job}/archive.zip")
    assert archive.ok
    with zipfile.ZipFile(io.BytesIO(archive.body())) as zipped:
        names = sorted(Path(n).name for n in zipped.namelist())
        assert names == [f"frame_{n:06d}.png" for n in range(1, 5)]
        assert zipped.testzip() is None


def test_cancel_by_its_button_stops_the_running_render(
    page: Page, dash: DashboardFarm, endless_scene: Path
) -> None:
    job_id = submit(dash, endless_scene, "1", 1, "dashboard endless")

    def rendering_pid() -> int | None:
        for task in dash.farm.tasks(job_id):
            if task.status == "active" and task.blender_pid and task.activity.startswith("frame"):
                return task.blender_pid
        return None

    pid = wait_until(rendering_pid, 120, "Blender sampling the endless frame")
    log_in(page, dash, f"/jobs/{job_id}")
    expect(page.locator("#summary .badge")).to_have_text("active")
    page.click("#job-actions button[data-action=cancel]")
    expect(page.locator("#summary .badge")).to_have_text("canceled", timeout=10_000)
    expect(page.locator("#tasks-body .badge").first).to_have_text("canceled", timeout=10_000)
    wait_until(lambda: process_gone(pid), 30, f"Blender {pid} to stop")
    assert {t.status for t in dash.farm.tasks(job_id)} == {"canceled"}
    screenshot(page, "job-canceled")


def test_machines_show_workers_and_an_admin_can_put_one_to_sleep(
    page: Page, dash: DashboardFarm
) -> None:
    log_in(page, dash, "/machines")
    site = page.locator("section.site[data-site=local]")
    expect(site.locator(".site-head .badge")).to_have_text("online")
    for name in ("w1", "w2"):
        expect(site.locator(f"tr[data-worker={name}]")).to_contain_text("5.0")
    w2 = site.locator("tr[data-worker=w2]")
    expect(w2.locator(".worker-status")).to_have_text("awake", timeout=30_000)
    started = time.monotonic()
    w2.locator("button[data-action=sleep]").click()
    expect(w2.locator(".worker-status")).to_have_text("asleep", timeout=15_000)
    assert time.monotonic() - started < 15
    screenshot(page, "machines")
    w2.locator("button[data-action=wake]").click()
    expect(w2.locator(".worker-status")).to_have_text("awake", timeout=15_000)
