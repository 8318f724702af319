"""The Dashboard's job page of a job that waits for another (submit --after): it names the job
it waits for, and once that job is canceled says so without a reload (the Server announces the
waiting job). A real Server without Managers (the jobs stay queued), a Dashboard and Debian's
Chromium."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dashkit import DashboardFarm, log_in, screenshot, start_dashboard, submit_fake_job
from playwright.sync_api import Browser, expect

from farmkit import TestFarm
from flamenco import wire


def test_the_job_page_says_which_job_it_waits_for(
    farm: TestFarm, tmp_path: Path, browser: Browser
) -> None:
    farm.start_server()
    url, proc = start_dashboard(farm)
    bake = submit_fake_job(farm, tmp_path, "bake")
    sha = hashlib.sha256((tmp_path / "scene.blend").read_bytes()).hexdigest()  # uploaded
    sub = wire.JobSubmission(
        name="render",
        files={"s.blend": sha},
        settings={"blend": "s.blend", "frames": "1-2"},
        after=[bake.id],
    )
    render = farm.api().call("POST", "/api/v1/jobs", wire.Job, sub)
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        log_in(page, DashboardFarm(farm, url, proc))
        page.goto(f"/jobs/{render.id}")
        waiting = page.locator("#waiting")
        expect(waiting).to_have_text(f"Waits for job {bake.id} (queued, 0 %).")
        expect(waiting).to_be_visible()
        screenshot(page, "job-waits-for-job")
        assert farm.cli("jobs", "cancel", bake.id).returncode == 0
        expect(waiting).to_have_text(f"Job {bake.id} canceled; requeue it or cancel this one.")
    finally:
        context.close()
