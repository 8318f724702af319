"""A job's frames on its Dashboard page a page of thumbnails at a time, in a real browser: the
page asks the Dashboard (and it the Server) for one page, never for every frame, and the
viewer steps across pages. A real Server and Dashboard; this test plays the Manager."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest
from dashkit import as_manager, put_file, submit_fake_job
from PIL import Image
from playwright.sync_api import Browser, Page, Response, expect

from farmkit import TestFarm

FRAMES = 50  # one page of 48 thumbnails and a second of 2
SIZE = "8\u00d78"  # as the viewer's title says it


class Site:
    def __init__(self, farm: TestFarm, url: str, job_id: str) -> None:
        self.farm, self.url, self.job_id = farm, url, job_id


def png(frame: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (frame * 5, 30, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A Server with a job of 50 rendered frames, and a Dashboard."""
    with TestFarm(tmp_path_factory.mktemp("dash-frames") / "farm") as farm:
        farm.start_server()
        job = submit_fake_job(farm, farm.root, "fifty frames", frames=f"1-{FRAMES}")
        worker = {"name": "w9", "status": "awake", "blender_version": "5.0.1"}
        sync = as_manager(
            farm, "POST", "/api/v1/manager/sync", json={"want": FRAMES, "workers": [worker]}
        ).json()
        for lease in sync["leases"]:
            for frame in lease["frames"]:
                task = f"/api/v1/manager/tasks/{lease['task_id']}"
                put_file(
                    farm, f"{task}/frames/{frame}", png(frame), filename=f"frame_{frame:04d}.png"
                )
        url, _ = farm.start_dashboard()
        yield Site(farm, url, job.id)


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(base_url=site.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def test_the_job_page_shows_one_page_of_frames_and_the_viewer_crosses_pages(
    page: Page, site: Site
) -> None:
    asked: list[int] = []  # the frames in each answer the page got

    def record(response: Response) -> None:
        if re.search(rf"/ui/jobs/{site.job_id}/frames\?", response.url):
            asked.append(len(json.loads(response.body())["frames"]))

    page.on("response", record)
    assert site.farm.secrets is not None
    page.goto(f"/jobs/{site.job_id}")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", site.farm.secrets.admin_password)
    page.click("button[type=submit]")

    thumbs, title = page.locator(".thumb"), page.locator("#viewer-title")
    expect(thumbs).to_have_count(48)
    expect(page.locator("#frames-count")).to_have_text(f"{FRAMES} of {FRAMES}")
    expect(page.locator("#frames-pager")).to_contain_text("1 / 2")
    page.locator("#frames-pager button[data-page='1']").click()
    expect(thumbs).to_have_count(2)
    expect(thumbs.first).to_have_attribute("data-frame", "49")
    expect(page.locator("#frames-pager")).to_contain_text("2 / 2")

    thumbs.first.click()  # frame 49, the first of the second page
    expect(title).to_contain_text(f"Frame 49 · frame_0049.png · {SIZE} · 49 of {FRAMES}")
    page.keyboard.press("ArrowLeft")  # back across the page: the thumbnails follow
    expect(title).to_contain_text(f"Frame 48 · frame_0048.png · {SIZE} · 48 of {FRAMES}")
    expect(thumbs).to_have_count(48)
    expect(page.locator("#frames-pager")).to_contain_text("1 / 2")
    for expected in (49, 50, 1):  # and forward, past the last frame to the first
        page.keyboard.press("ArrowRight")
        expect(title).to_contain_text(f"Frame {expected} · ")
    image = page.locator("#viewer-img")
    expect(image).to_have_attribute("src", re.compile(rf"/ui/jobs/{site.job_id}/frames/1/view"))

    assert asked and max(asked) == 48, asked  # never the whole list
    assert 2 in asked
