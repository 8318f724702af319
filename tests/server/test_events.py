"""The Server's live events: what changed, as server-sent events, for the Dashboard."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx

from farmkit import TestFarm, wait_until


def test_events_name_what_changed(farm: TestFarm, demo_scene: Path) -> None:
    farm.start_server()
    received: list[tuple[str, dict]] = []

    def listen() -> None:
        headers = {"Authorization": f"Bearer {farm.token}"}
        with httpx.stream(
            "GET", f"{farm.server_url}/api/v1/events", headers=headers, timeout=30
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind:
                    received.append((kind, json.loads(line.removeprefix("data: "))))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_until(lambda: farm.api().request("GET", "/api/v1/version") and True, 5, "the Server")
    submitted = farm.cli("submit", str(demo_scene), "--frames", "1", "--json")
    job_id = json.loads(submitted.stdout)["id"]
    listener.join(timeout=20)
    assert received == [("job", {"id": job_id})]


def test_events_need_a_token(farm: TestFarm) -> None:
    farm.start_server()
    refused = httpx.get(f"{farm.server_url}/api/v1/events")
    assert refused.status_code == 401


def test_a_stream_of_one_job_greets_then_carries_only_that_jobs_events(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()

    def submit(name: str) -> str:
        done = farm.cli("submit", str(demo_scene), "--frames", "1", "--name", name, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["id"]

    watched = submit("watched")
    lines: list[str] = []
    events: list[tuple[str, dict]] = []
    subscribed = threading.Event()

    def listen() -> None:
        headers = {"Authorization": f"Bearer {farm.token}"}
        url = f"{farm.server_url}/api/v1/events"
        with httpx.stream("GET", url, params={"job": watched}, headers=headers, timeout=30) as r:
            kind = None
            for line in r.iter_lines():
                lines.append(line)
                if line == ": connected":
                    subscribed.set()
                elif line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind:
                    events.append((kind, json.loads(line.removeprefix("data: "))))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert subscribed.wait(10), lines
    submit("another")  # its event does not reach the watcher of the first job
    paused = farm.cli("jobs", "pause", watched)
    assert paused.returncode == 0, paused.stderr
    listener.join(timeout=20)
    assert lines[0] == ": connected"
    assert events == [("job", {"id": watched})]


def test_a_stream_of_a_job_that_does_not_exist_is_refused_with_a_sentence(
    farm: TestFarm,
) -> None:
    farm.start_server()
    headers = {"Authorization": f"Bearer {farm.token}"}
    refused = httpx.get(f"{farm.server_url}/api/v1/events", params={"job": "nope"}, headers=headers)
    assert refused.status_code == 404
    assert refused.json() == {"detail": "There is no job with id 'nope'."}
