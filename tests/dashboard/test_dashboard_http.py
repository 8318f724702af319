"""The Dashboard against a real Server without Workers: logins, users, CSRF, the event relay,
and acting on several jobs at once."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import httpx
from dashkit import screenshot, start_dashboard, submit_fake_job
from playwright.sync_api import Browser, expect

from farmkit import TestFarm
from flamenco import wire

FORM = {"content-type": "application/x-www-form-urlencoded"}


def log_in(url: str, user: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    answer = client.post("/login", content=f"username={user}&password={password}", headers=FORM)
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/").text
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def test_users_add_makes_a_user_without_admin_powers(farm: TestFarm) -> None:
    farm.start_server()
    url, _ = start_dashboard(farm)
    added = farm.cli("users", "add", "bob", "--password", "bob-secret-1")
    assert added.returncode == 0, added.stderr
    again = farm.cli("users", "add", "bob", "--password", "bob-secret-1")
    assert again.returncode == 1 and "already exists" in again.stderr
    short = farm.cli("users", "add", "eve", "--password", "short")
    assert short.returncode == 1 and "8 characters" in short.stderr

    bob = log_in(url, "bob", "bob-secret-1")
    assert bob.get("/ui/managers").json()["admin"] is False
    assert 'name="csrf-token"' in bob.get("/machines").text
    action = "/ui/managers/local/workers/w1/sleep"
    refused = bob.post(action)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    refused = bob.post(action, headers={"X-CSRF-Token": csrf_of(bob)})
    assert refused.status_code == 403 and "administrator" in refused.json()["detail"]
    token = (
        farm.api()
        .call(
            "POST",
            "/api/v1/login",
            wire.TokenIssued,
            wire.LoginRequest(username="bob", password="bob-secret-1"),
        )
        .token
    )
    body = {"name": "mallory", "password": "12345678"}
    assert farm.api(token).http.post("/api/v1/users", json=body).status_code == 403


def test_a_session_ends_at_logout_and_forged_cookies_get_nothing(farm: TestFarm) -> None:
    farm.start_server()
    url, _ = start_dashboard(farm)
    admin = log_in(url, "admin", farm.secrets.admin_password)  # type: ignore[union-attr]
    assert admin.get("/ui/jobs").status_code == 200
    cookie = admin.cookies["flamenco_dashboard"]
    forged = httpx.Client(base_url=url, cookies={"flamenco_dashboard": cookie[:-4] + "0000"})
    assert forged.get("/ui/jobs").status_code == 401
    assert forged.get("/").headers["location"] == "/login?next=/"
    logins = farm.api().call("GET", "/api/v1/tokens", wire.TokenList).root
    assert [t.label for t in logins] == ["flamenco up", "login"]  # the session's own token
    assert admin.post("/logout", content=f"csrf={csrf_of(admin)}", headers=FORM).status_code == 303
    stale = httpx.Client(base_url=url, cookies={"flamenco_dashboard": cookie})
    refused = stale.get("/ui/jobs")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "You logged out of this Dashboard session; log in again."
    # Its token on the Server is revoked with it.
    left = farm.api().call("GET", "/api/v1/tokens", wire.TokenList).root
    assert [t.label for t in left] == ["flamenco up"]


def test_the_servers_events_are_relayed_to_each_session(farm: TestFarm, tmp_path: Path) -> None:
    farm.start_server()
    url, _ = start_dashboard(farm)
    assert httpx.get(f"{url}/ui/events").status_code == 401
    admin = log_in(url, "admin", farm.secrets.admin_password)  # type: ignore[union-attr]
    lines: queue.Queue[str] = queue.Queue()

    def listen() -> None:
        with admin.stream("GET", "/ui/events", timeout=httpx.Timeout(10, read=30)) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                lines.put(line)
                if line.startswith("data:") and '"id"' in line:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert lines.get(timeout=10).startswith("retry:")
    job = submit_fake_job(farm, tmp_path)
    seen = []
    while not any(job.id in line for line in seen):
        seen.append(lines.get(timeout=10))
    assert "event: job" in seen, seen
    listener.join(10)
    jobs = admin.get("/ui/jobs").json()["jobs"]
    assert [(j["name"], j["status"], j["frames_total"]) for j in jobs] == [("fake", "queued", 3)]


def test_several_jobs_are_found_selected_and_changed_at_once(
    farm: TestFarm, tmp_path: Path, browser: Browser
) -> None:
    farm.start_server()  # no Manager: the jobs stay queued until acted on
    url, _ = start_dashboard(farm)
    jobs = [submit_fake_job(farm, tmp_path, name) for name in ("shot A", "shot B", "other")]
    context = browser.new_context(base_url=url, viewport={"width": 1440, "height": 700})
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto("/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", farm.secrets.admin_password)  # type: ignore[union-attr]
        page.click("button[type=submit]")
        rows = page.locator("#jobs-body tr")
        expect(rows).to_have_count(3)
        page.fill("#search", "shot")
        expect(rows).to_have_count(2)
        page.check("#select-all")
        expect(page.locator("#selected-count")).to_have_text("2 selected")
        page.click("#bulkbar button[data-action=pause]")
        expect(page.locator("#jobs-body .badge")).to_have_text(["paused", "paused"])
        page.fill("#bulk-priority", "80")
        page.click("#set-priority")
        expect(page.locator("#jobs-body td.num:nth-child(6)")).to_have_text(["80", "80"])
        screenshot(page, "jobs-selected")
        page.select_option("#status-filter", "paused")
        page.fill("#search", "")
        expect(rows).to_have_count(2)
        page.click("#bulkbar button[data-action=delete]")
        expect(rows).to_have_count(0)
        page.select_option("#status-filter", "")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("other")
    finally:
        context.close()
    assert [j.id for j in farm.api().call("GET", "/api/v1/jobs", wire.JobList).root] == [jobs[2].id]


def shown(first: int, last: int, of: int) -> str:
    """What the tasks' pager says it shows."""
    return f"{first}\N{EN DASH}{last} of {of}"


def as_manager(farm: TestFarm, path: str, body: dict) -> dict:
    """A call of the farm's Manager `local` to the Server, as if it had a Worker `w9`."""
    assert farm.secrets is not None
    headers = {"Authorization": f"Bearer {farm.secrets.manager_token}"}
    answer = httpx.post(f"{farm.server_url}{path}", json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_big_job_shows_one_page_of_tasks_at_a_time_and_keeps_it_live(
    farm: TestFarm, tmp_path: Path, browser: Browser
) -> None:
    farm.start_server()  # no Manager process: this test plays the Manager itself
    url, _ = start_dashboard(farm)
    job = submit_fake_job(farm, tmp_path, "big", frames="1-150")
    admin = log_in(url, "admin", farm.secrets.admin_password)  # type: ignore[union-attr]
    refused = admin.get(f"/ui/jobs/{job.id}/tasks?status=done")
    assert refused.status_code == 422 and "'done' is not a task status" in refused.json()["detail"]
    assert admin.get(f"/ui/jobs/{job.id}/tasks?offset=-1").status_code == 422

    context = browser.new_context(base_url=url, viewport={"width": 1440, "height": 900})
    asked: list[str] = []
    context.on("request", lambda request: asked.append(request.url))
    try:
        page = context.new_page()
        page.goto(f"/jobs/{job.id}")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", farm.secrets.admin_password)  # type: ignore[union-attr]
        page.click("button[type=submit]")
        rows, names = page.locator("#tasks-body tr"), page.locator("#tasks-body tr td:first-child")
        expect(rows).to_have_count(100)
        expect(names.first).to_have_text("render 1")
        expect(page.locator("#tasks-range")).to_have_text(shown(1, 100, 150))
        expect(page.locator("#task-filter .chip.on")).to_have_text("all 150")
        expect(page.locator("#live")).to_have_text("live")

        # A Manager leases the first task and its Worker starts it: the row follows, live.
        worker = {"name": "w9", "status": "awake", "blender_version": "5.0.1"}
        (lease,) = as_manager(farm, "/api/v1/manager/sync", {"want": 1, "workers": [worker]})[
            "leases"
        ]
        assert lease["name"] == "render 1"
        first = rows.first
        expect(first.locator(".badge")).to_have_text("leased")
        started = {"update_id": "u-active-1", "task_id": lease["task_id"], "status": "active"}
        as_manager(farm, "/api/v1/manager/updates", {"updates": [started | {"worker": "w9"}]})
        expect(first.locator(".badge")).to_have_text("active")
        expect(first).to_contain_text("w9")
        expect(page.locator("#timeline rect.tl-run")).to_have_count(1)
        screenshot(page, "job-big-first-page")

        page.click("#tasks-pager button[data-to=next]")
        expect(names.first).to_have_text("render 101")
        expect(rows).to_have_count(50)
        expect(page.locator("#tasks-range")).to_have_text(shown(101, 150, 150))
        expect(page.locator("#tasks-pager button[data-to=next]")).to_be_disabled()
        page.click("#tasks-pager button[data-to=first]")
        expect(names.first).to_have_text("render 1")
        page.click("#task-filter .chip[data-status=queued]")
        expect(names.first).to_have_text("render 2")
        expect(page.locator("#tasks-range")).to_have_text(shown(1, 100, 149))
        page.click("#tasks-pager button[data-to=last]")
        expect(rows).to_have_count(49)
        page.fill("#task-search", "render 14")
        expect(names).to_have_text(["render 14", *(f"render {n}" for n in range(140, 150))])
        expect(page.locator("#tasks-pager")).to_be_empty()

        # Paused from elsewhere (a job event only): the rows shown follow it too.
        page.fill("#task-search", "")
        page.click("#task-filter .chip[data-status='']")
        expect(rows).to_have_count(100)
        farm.api().request("POST", f"/api/v1/jobs/{job.id}/pause")
        expect(rows.first.locator(".badge")).to_have_text("paused")
        expect(page.locator("#task-filter .chip[data-status=paused]")).to_have_text("paused 150")
    finally:
        context.close()
    pages = [u for u in asked if f"/ui/jobs/{job.id}/tasks?" in u]
    assert pages and all("limit=100" in u for u in pages), pages  # never all tasks at once


def test_the_jobs_list_has_each_started_jobs_time_at_once(farm: TestFarm, tmp_path: Path) -> None:
    """The Server says when each job started, so the first list the Dashboard gives has
    every job's time so far, without asking the Server for a page of each job's tasks."""
    farm.start_server()  # no Manager process: this test plays the Manager itself
    url, _ = start_dashboard(farm)
    jobs = [submit_fake_job(farm, tmp_path, f"shot {n}", frames="1") for n in range(3)]
    worker = {"name": "w9", "status": "awake", "blender_version": "5.0.1"}
    leases = as_manager(farm, "/api/v1/manager/sync", {"want": 3, "workers": [worker]})["leases"]
    assert len(leases) == 3
    for status in ("active", "completed"):
        updates = [
            {"update_id": f"u-{status}-{n}", "task_id": lease["task_id"], "status": status}
            | {"worker": "w9"}
            for n, lease in enumerate(leases)
        ]
        as_manager(farm, "/api/v1/manager/updates", {"updates": updates})
    listed = farm.api().call("GET", "/api/v1/jobs", wire.JobList).root
    assert all(job.started is not None for job in listed)

    admin = log_in(url, "admin", farm.secrets.admin_password)  # type: ignore[union-attr]
    answer = admin.get("/ui/jobs").json()
    assert answer["fresh"], "no start left to look up"
    rows = {row["id"]: row for row in answer["jobs"]}
    assert set(rows) == {job.id for job in jobs}
    for job in listed:
        assert rows[job.id]["status"] == "completed"
        assert rows[job.id]["started"] == job.started.isoformat()  # type: ignore[union-attr]
        assert rows[job.id]["elapsed_s"] is not None
