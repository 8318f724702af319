"""Several networks: one Server, a Manager per site, each with its own Workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farmkit import TestFarm, wait_until

pytestmark = pytest.mark.blender


def _submit(farm: TestFarm, scene: Path, *args: str) -> str:
    done = farm.cli("submit", str(scene), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def test_site_bound_jobs_stay_on_their_site_and_open_jobs_use_both(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    for site in ("north", "south"):
        farm.start_manager(site)
        for n in (1, 2):
            farm.start_worker(f"{site}-{n}", manager=site)

    def both_sites_have_two_workers() -> list[dict] | None:
        listed = json.loads(farm.cli("managers", "list", "--json").stdout)
        sites = [m for m in listed if m["name"] in ("north", "south")]
        ready = all(m["status"] == "online" and len(m["workers"]) == 2 for m in sites)
        return listed if len(sites) == 2 and ready else None

    managers = wait_until(both_sites_have_two_workers, 60, "two sites with two Workers each")
    # `local` is the Manager `flamenco up` would run; it was never started here.
    assert {m["name"]: m["status"] for m in managers} == {
        "local": "offline",
        "north": "online",
        "south": "online",
    }

    bound = _submit(farm, demo_scene, "--frames", "1-4", "--site", "south")
    open_job = _submit(farm, demo_scene, "--frames", "1-10")
    for job_id in (bound, open_job):
        assert farm.wait_job(job_id).status == "completed", farm.logs()

    bound_tasks = farm.tasks(bound)
    assert {t.manager for t in bound_tasks} == {"south"}
    assert {t.worker for t in bound_tasks} <= {"south-1", "south-2"}
    assert {t.manager for t in farm.tasks(open_job)} == {"north", "south"}


def test_a_job_for_an_unknown_site_is_refused(farm: TestFarm, demo_scene: Path) -> None:
    farm.start_server()
    farm.start_manager("north")
    refused = farm.cli("submit", str(demo_scene), "--frames", "1", "--site", "atlantis")
    assert refused.returncode != 0
    assert "Unknown site 'atlantis'; the farm's sites are: local, north." in refused.stderr
