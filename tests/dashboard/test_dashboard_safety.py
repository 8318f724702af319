"""The Dashboard against a real Server: security headers on every answer, pages working
under that policy in a real browser, logout, unreadable login forms, failed logins limited
per browser, and a job's files served only as images, videos or downloads."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dashkit import as_manager, put_file, submit_fake_job
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, expect

from farmkit import TestFarm
from flamenco import wire

FORM = {"content-type": "application/x-www-form-urlencoded"}
SHOWN_MS = 20_000  # generous: two cores are shared by the whole suite


class Site:
    def __init__(self, farm: TestFarm, url: str, job: wire.Job) -> None:
        self.farm, self.url, self.job = farm, url, job

    @property
    def password(self) -> str:
        assert self.farm.secrets is not None
        return self.farm.secrets.admin_password


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A Server and a Dashboard, shared by the module; this test plays the Manager itself."""
    with TestFarm(tmp_path_factory.mktemp("dash-safety") / "farm") as farm:
        farm.start_server()
        # Submitted before the Dashboard caches a list of jobs, so every page shows it.
        job = submit_fake_job(farm, farm.root, "under the policy")
        url, _ = farm.start_dashboard()
        yield Site(farm, url, job)


def dashboard(url: str, address: str = "127.0.0.1") -> httpx.Client:
    """A client of the Dashboard whose connections come from `address` (any 127.x is here)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, transport=transport, timeout=30)


def log_in(client: httpx.Client, user: str, password: str) -> httpx.Response:
    return client.post("/login", content=f"username={user}&password={password}", headers=FORM)


def assert_secured(answer: httpx.Response) -> None:
    policy = answer.headers.get("content-security-policy", "")
    what = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    assert "frame-ancestors 'none'" in policy, what
    assert "script-src 'self'" in policy and "style-src 'self'" in policy, what
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
    assert answer.headers.get("x-content-type-options") == "nosniff", what


def test_every_answer_carries_the_security_headers(site: Site) -> None:
    with dashboard(site.url) as client:
        answers = [
            client.get("/login"),
            client.get("/"),  # a redirect to the login
            client.get("/static/common.js"),
            client.get("/ui/jobs"),  # 401 in JSON
            client.get("/no/such/page"),
            client.post("/login", content=b"username=\xff", headers=FORM),
        ]
        assert log_in(client, "admin", site.password).status_code == 303
        answers += [client.get("/"), client.get("/machines"), client.get("/ui/jobs")]
    assert [a.status_code for a in answers] == [200, 303, 200, 401, 404, 400, 200, 200, 200]
    for answer in answers:
        assert_secured(answer)


def test_the_pages_work_under_the_policy_in_a_real_browser(site: Site, browser: Browser) -> None:
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    refused: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            refused.append(message.text)

    try:
        page = context.new_page()
        page.on("console", note)
        page.goto("/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", site.password)
        page.click("button[type=submit]")
        row = page.locator("#jobs-body tr", has_text="under the policy")
        expect(row).to_have_count(1, timeout=SHOWN_MS)
        expect(page.locator("#live")).to_have_text(
            "live", timeout=SHOWN_MS
        )  # scripts and the event stream run
        bar = row.locator(".progress .bar span")
        assert bar.evaluate("el => el.style.width") == "0%"  # set by script, not markup
        page.goto(f"/jobs/{site.job.id}")
        expect(page.locator("#tasks-body tr")).to_have_count(3, timeout=SHOWN_MS)
        page.goto("/machines")
        expect(page.locator("#live")).to_have_text("live", timeout=SHOWN_MS)
    finally:
        context.close()
    assert refused == []


def test_logout_ends_the_session_without_the_csrf_token(site: Site) -> None:
    with dashboard(site.url) as client:
        assert log_in(client, "admin", site.password).status_code == 303
        cookie = client.cookies["flamenco_dashboard"]
        assert client.get("/ui/jobs").status_code == 200
        logout = client.post("/logout")  # no form, no token
        assert logout.status_code == 303 and logout.headers["location"] == "/login"
    with dashboard(site.url) as stale:
        stale.cookies.set("flamenco_dashboard", cookie)
        assert stale.get("/ui/jobs").status_code == 401


@pytest.mark.parametrize(
    ("body", "headers", "sentence"),
    [
        (b"username=adm\xffin&password=secret", FORM, "The form is not valid UTF-8."),
        (b"username=adm%FFin&password=secret", FORM, "The form is not valid UTF-8."),
        (
            b'{"username": "admin", "password": "secret"}',
            {"content-type": "application/json"},
            "The request is not a form (application/x-www-form-urlencoded).",
        ),
    ],
    ids=["raw-bytes", "percent-encoded", "json"],
)
def test_a_login_that_is_not_a_utf8_form_is_a_400_with_its_reason(
    site: Site, body: bytes, headers: dict[str, str], sentence: str
) -> None:
    with dashboard(site.url) as client:
        answer = client.post("/login", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert sentence in answer.text
    assert "Traceback" not in site.farm.logs()


# ---- a job's files -------------------------------------------------------------------------


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def test_a_jobs_files_are_images_videos_or_downloads(site: Site, tmp_path: Path) -> None:
    job = submit_fake_job(site.farm, tmp_path, "files", frames="1")
    worker = {"name": "w9", "status": "awake", "blender_version": "5.0.1"}
    sync = as_manager(
        site.farm, "POST", "/api/v1/manager/sync", json={"want": 10, "workers": [worker]}
    )
    (lease,) = [lease for lease in sync.json()["leases"] if lease["job_id"] == job.id]
    task = f"/api/v1/manager/tasks/{lease['task_id']}"
    put_file(site.farm, f"{task}/frames/1", png(), filename="frame_0001.png")
    put_file(site.farm, f"{task}/artifacts/report.html", b"<script>alert(document.cookie)</script>")
    put_file(site.farm, f"{task}/artifacts/preview.mp4", b"\x00\x00\x00\x18ftypmp42 not a movie")

    api = site.farm.api().http
    with dashboard(site.url) as dash:
        assert log_in(dash, "admin", site.password).status_code == 303
        for get in (api.get, dash.get):
            prefix = f"/api/v1/jobs/{job.id}" if get == api.get else f"/ui/jobs/{job.id}"
            script = get(f"{prefix}/artifacts/report.html")
            assert script.status_code == 200, script.text
            assert script.headers["content-type"] == "application/octet-stream"
            assert script.headers["content-disposition"].startswith("attachment;")
            assert 'filename="report.html"' in script.headers["content-disposition"]
            assert script.headers["x-content-type-options"] == "nosniff"

            frame = get(f"{prefix}/frames/1")
            assert frame.headers["content-type"] == "image/png"
            assert frame.headers["content-disposition"].startswith("inline;")
            assert frame.headers["x-content-type-options"] == "nosniff"
            assert frame.content == png()
            # The viewer's picture of a frame browsers draw is that frame, typed the same way.
            view = get(f"{prefix}/frames/1/view")
            assert (view.headers["content-type"], view.content) == ("image/png", png())
            assert view.headers["x-content-type-options"] == "nosniff"

            video = get(f"{prefix}/artifacts/preview.mp4")
            assert video.headers["content-type"] == "video/mp4"
            assert video.headers["x-content-type-options"] == "nosniff"


# ---- failed logins ---------------------------------------------------------------------------


def test_failed_logins_through_the_dashboard_are_limited_per_browser(farm: TestFarm) -> None:
    """The Dashboard passes the browser's address on: one browser guessing passwords is
    refused, while another user in another browser still logs in."""
    farm.start_server()
    url, _ = farm.start_dashboard()
    added = farm.cli("users", "add", "bob", "--password", "bob-secret-1")
    assert added.returncode == 0, added.stderr

    with dashboard(url, "127.0.0.1") as guessing:
        answers = [log_in(guessing, "admin", f"guess-{n}") for n in range(10)]
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 5
    assert "Too many failed logins" in answers[-1].text
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 5

    with dashboard(url, "127.0.0.2") as other:
        assert log_in(other, "bob", "bob-secret-1").status_code == 303
        assert other.get("/ui/jobs").status_code == 200
