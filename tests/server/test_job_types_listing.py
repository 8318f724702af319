"""GET /api/v1/job-types on a real Server: the installed job types (entry points) with their
settings' JSON schemas; a user's token needed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from farmkit import TestFarm
from flamenco.core.settings_schema import setting_fields


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    with TestFarm(tmp_path_factory.mktemp("job-types") / "farm") as farm:
        farm.start_server()
        yield farm


def test_the_installed_job_types_are_listed_with_their_settings(srv: TestFarm) -> None:
    answer = httpx.get(
        f"{srv.server_url}/api/v1/job-types",
        headers={"Authorization": f"Bearer {srv.token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    listing = {item["name"]: item for item in answer.json()}
    assert {"blender-render", "blender-script"} <= set(listing)
    render = listing["blender-render"]
    assert render["label"] == "Render frames"
    fields = {f.name: f for f in setting_fields(render["settings_schema"])}
    assert fields["blend"].file == "scene" and fields["blend"].required
    assert fields["frames"].required and not fields["chunk_size"].required
    assert fields["render_device"].choices[0] == "CPU"
    script = {f.name: f for f in setting_fields(listing["blender-script"]["settings_schema"])}
    assert script["script"].file == "local"


def test_the_listing_needs_a_token(srv: TestFarm) -> None:
    answer = httpx.get(f"{srv.server_url}/api/v1/job-types", timeout=30)
    assert answer.status_code == 401
    assert answer.json()["detail"].endswith(".")
