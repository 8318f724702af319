"""The jobs page of a farm that kept many jobs, in a real Chromium against a real Server and
Dashboard: the newest 500 are drawn, "Show more" draws the rest, and search, the status filter
and "select all" work over every job, drawn or not yet."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dashkit import start_dashboard
from playwright.sync_api import Browser, expect

from farmkit import TestFarm
from flamenco import wire

JOBS = 510


def submit_many(farm: TestFarm, tmp: Path, count: int) -> list[str]:
    """Jobs whose scene only looks like a .blend, oldest first: `shot 000` … ."""
    scene = tmp / "scene.blend"
    scene.write_bytes(b"BLENDER-v405REND" + bytes(200))
    sha = hashlib.sha256(scene.read_bytes()).hexdigest()
    api = farm.api()
    api.upload_blob(scene, sha)
    ids = []
    for number in range(count):
        sub = wire.JobSubmission(
            name=f"shot {number:03d}",
            files={"s.blend": sha},
            settings={"blend": "s.blend", "frames": "1"},
        )
        ids.append(api.call("POST", "/api/v1/jobs", wire.Job, sub).id)
    return ids


def test_the_newest_500_jobs_are_drawn_and_the_rest_on_asking(
    farm: TestFarm, tmp_path: Path, browser: Browser
) -> None:
    farm.start_server()  # no Manager: the jobs stay queued
    url, _ = start_dashboard(farm)
    ids = submit_many(farm, tmp_path, JOBS)
    context = browser.new_context(base_url=url, viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        page.goto("/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", farm.secrets.admin_password)  # type: ignore[union-attr]
        page.click("button[type=submit]")
        rows, more = page.locator("#jobs-body tr"), page.locator("#jobs-more")
        expect(rows).to_have_count(500)
        expect(rows.first).to_contain_text(f"shot {JOBS - 1:03d}")  # newest first
        expect(more).to_have_text("Show 10 more (10 not shown)")

        # The oldest job is not drawn yet, and search finds it among all of them.
        page.fill("#search", "shot 000")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(ids[0])
        expect(more).to_be_hidden()
        page.fill("#search", "")
        expect(rows).to_have_count(500)

        # "Select all" takes the rows drawn; "Show more" draws the rest.
        page.check("#select-all")
        expect(page.locator("#selected-count")).to_have_text("500 selected")
        more.click()
        expect(rows).to_have_count(JOBS)
        expect(rows.last).to_contain_text("shot 000")
        expect(more).to_be_hidden()
        expect(page.locator("#select-all")).to_have_js_property("indeterminate", True)
        page.select_option("#status-filter", "queued")
        expect(rows).to_have_count(500)  # a new filter starts from the first rows again
    finally:
        context.close()
