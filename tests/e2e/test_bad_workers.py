"""One Worker's bad input costs its site nothing: real Server, Manager, Worker and Blender.

A Worker once reported `cpu_percent: NaN`; its Manager took it, passed it on as null (JSON has
no NaN), and the Server refused every sync of that Manager from then on: new jobs stayed
queued while the site's Workers sat idle.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    """A Server, a Manager and one real Worker, 'healthy'."""
    with TestFarm(tmp_path_factory.mktemp("bad-workers") / "farm") as farm:
        farm.start_server()
        farm.start_manager()
        farm.start_worker("healthy")
        yield farm


def test_a_worker_reporting_nan_is_refused_and_jobs_still_run_beside_it(
    site: TestFarm, demo_scene: Path
) -> None:
    assert site.secrets is not None
    joined = httpx.post(
        f"{site.manager_url}/api/v1/workers/register",
        json={"name": "nan-load", "secret": site.secrets.worker_secret},
        timeout=30,
    )
    assert joined.status_code == 200, joined.text
    refused = httpx.post(
        f"{site.manager_url}/api/v1/worker/sync",
        content=b'{"status": "awake", "stats": {"cpu_percent": NaN, "memory_used_mb": 1}}',
        headers={
            "Authorization": f"Bearer {joined.json()['token']}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    assert refused.status_code == 422, refused.text
    assert refused.json() == {
        "detail": "The request is invalid: field 'stats.cpu_percent': "
        "Input should be a finite number."
    }

    done = site.cli(
        "submit", str(demo_scene), "--frames", "1-3", "--name", "beside-nan", "--wait", "--json"
    )
    assert done.returncode == 0, done.stderr + site.logs()
    job = json.loads(done.stdout)
    assert (job["status"], job["frames_done"]) == ("completed", 3), site.logs()


def test_a_second_worker_under_the_name_of_an_online_one_exits_saying_why(
    site: TestFarm, tmp_path: Path
) -> None:
    """`flamenco worker --name healthy` on another machine (another data folder) while
    'healthy' is online: refused, with the sentence, and the process ends."""
    manager = site.managers["local"]
    twin = site.cli(
        "worker",
        "--manager",
        manager.url,
        "--name",
        "healthy",
        "--data-dir",
        str(tmp_path / "twin"),
        env={"FLAMENCO_WORKER_SECRET": manager.secret},
        timeout=120,
    )
    assert twin.returncode != 0
    assert "Error (409): A Worker named 'healthy' is already online at this Manager" in " ".join(
        twin.stderr.split()
    )
    status = httpx.get(
        f"{manager.url}/api/v1/status",
        headers={"Authorization": f"Bearer {manager.token}"},
        timeout=30,
    ).json()
    assert [w["name"] for w in status["workers"]].count("healthy") == 1
