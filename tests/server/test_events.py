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
