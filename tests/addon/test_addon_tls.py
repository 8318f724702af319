"""The add-on against an HTTPS Server whose certificate comes from a throwaway CA (trustme):
real Blender (the bpy wheel), the add-on installed from its zip, a real farm over TLS.

Without its CA bundle preference the add-on refuses the Server with one sentence naming host
and reason and creates no job; with it, it submits and follows a job that renders.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_addon import (  # the same module pytest collected: its fixtures, not copies
    addon_zip,
    path_without_blender,
    run_session,
    scene,
    worker_listed,
)

from farmkit import TestFarm, wait_until

pytestmark = pytest.mark.blender
__all__ = ["addon_zip", "scene"]  # fixtures used by name below


@pytest.fixture(scope="module")
def tls_addon_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    with TestFarm(tmp_path_factory.mktemp("addon-tls-farm"), tls=True) as farm:
        farm.start_server()
        farm.start_manager()
        farm.start_worker("w-tls", env={"PATH": path_without_blender()})
        wait_until(lambda: worker_listed(farm), 60, "the Worker listed on the Server")
        yield farm


def test_the_addon_submits_to_an_https_server_it_trusts_by_its_ca_preference(
    tls_addon_farm: TestFarm, addon_zip: Path, scene: Path, tmp_path: Path
) -> None:
    farm = tls_addon_farm
    assert farm.tls is not None and farm.server_url.startswith("https://")
    jobs_before = farm.api().request("GET", "/api/v1/jobs").json()
    plan = {
        "mode": "tls",
        "zip": str(addon_zip),
        "server_url": farm.server_url,
        "token": farm.token,
        "scene": str(scene),
        "ca_bundle": str(farm.tls.ca_bundle),
        "wait_s": 120,
    }
    r = run_session(plan, tmp_path / "session")

    host_port = farm.server_url.removeprefix("https://")
    sentence = re.compile(
        rf"The certificate of {re.escape(host_port)} is not trusted \([^)]+\); "
        r"set its CA bundle in the add-on's preferences\."
    )
    assert r["untrusted_check"]["result"] == ["CANCELLED"]
    assert sentence.fullmatch(r["untrusted_check"]["error"]), r["untrusted_check"]
    assert r["untrusted_submit"]["result"] == ["CANCELLED"]
    assert sentence.search(r["untrusted_status"]), r["untrusted_status"]
    assert r["jobs_before"] == ""  # no job was made while the Server was not trusted
    assert r["ca_bundle_subtype"] == "FILE_PATH"
    assert "ca_bundle" in r["preferences_panel"]["props"]

    assert r["check"] == {"result": ["FINISHED"], "error": ""}, r["check"]
    assert r["connection"].startswith("Connected to")
    assert r["submit"]["result"] == ["FINISHED"], r["submit"]
    job_id = r["job"]["id"]
    assert farm.wait_job(job_id).status == "completed", farm.logs()
    assert r["final_status"] == "completed"
    jobs_after = farm.api().request("GET", "/api/v1/jobs").json()
    assert len(jobs_after) == len(jobs_before) + 1
