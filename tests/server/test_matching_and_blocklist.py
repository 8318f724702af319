"""Tasks reach only Workers that may run them; Workers that keep failing a job are kept off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import BLEND, add_manager, lease_sync, make_services, task_update

from flamenco import wire
from flamenco.core.states import TaskStatus
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def job_with(svc: ServerServices, frames: str = "1", **settings: object) -> wire.Job:
    sha = svc.blobs.put_file(BLEND)
    sub = wire.JobSubmission(
        name="matched",
        files={"s.blend": sha},
        settings={"blend": "s.blend", "frames": frames, **settings},
    )
    return svc.jobs.submit(sub, submitter="alice")


def worker(
    name: str, version: str = "5.0.1", tags: tuple[str, ...] = (), backends: tuple[str, ...] = ()
) -> wire.WorkerSummary:
    gpus = [wire.GpuInfo(index=0, vendor="NVIDIA", model="test", backends=list(backends))]
    return wire.WorkerSummary(
        name=name,
        status="awake",
        blender_version=version,
        tags=list(tags),
        gpus=gpus if backends else [],
    )


@pytest.mark.parametrize(
    ("settings", "misfit", "fit", "reason"),
    [
        (
            {"worker_tag": "farm-b"},
            worker("a"),
            worker("b", tags=("farm-b",)),
            "Waiting: the job needs a Worker with the tag 'farm-b', and no Worker online has that.",
        ),
        (
            {"min_blender_version": "5.0.1"},
            worker("old", "4.2.3"),
            worker("new", "5.0.1"),
            # An older Worker's summary, with only blender_version, still counts.
            "Waiting: the job needs Blender 5.0.1 or newer, "
            "and the Workers online have Blender 4.2.3.",
        ),
        (
            {"render_device": "OPTIX"},
            worker("cpu"),
            worker("rtx", backends=("CUDA", "OPTIX")),
            "Waiting: the job needs a Worker with a OPTIX GPU, and no Worker online has that.",
        ),
        (
            {"render_device": "GPU"},
            worker("cpu"),
            worker("amd", backends=("HIP",)),
            "Waiting: the job needs a Worker with a GPU, and no Worker online has that.",
        ),
    ],
)
def test_tasks_only_go_where_a_worker_qualifies_and_jobs_say_why_they_wait(
    svc: ServerServices,
    settings: dict,
    misfit: wire.WorkerSummary,
    fit: wire.WorkerSummary,
    reason: str,
) -> None:
    job = job_with(svc, **settings)
    lacking, able = add_manager(svc, "lacking"), add_manager(svc, "able")
    assert lease_sync(svc, lacking, want=1, workers=[misfit]).leases == []
    assert svc.jobs.get(job.id).waiting_reason == reason

    (lease,) = lease_sync(svc, able, want=1, workers=[fit]).leases
    assert lease.requirements["device"] == settings.get("render_device", "CPU")
    assert svc.jobs.get(job.id).waiting_reason is None


def test_a_worker_failing_a_jobs_tasks_is_blocklisted_for_that_job(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    job = job_with(svc, frames="1-4")
    both = [worker("bad"), worker("good")]
    leases = lease_sync(svc, site, want=3, workers=both).leases
    failures = [
        task_update(lease.task_id, TaskStatus.FAILED, worker="bad", error="crash")
        for lease in leases
    ]
    svc.leases.apply_updates(site, failures)

    reply = lease_sync(svc, site, held=[], workers=both)
    assert reply.blocklist == {}  # nothing held, nothing to say yet
    assert svc.jobs.get(job.id).blocklist == ["bad"]
    assert lease_sync(svc, site, want=4, workers=[worker("bad")]).leases == []

    retried = lease_sync(svc, site, want=4, workers=both)
    assert len(retried.leases) == 4
    assert retried.blocklist == {job.id: ["bad"]}
    assert {tuple(lease.failed_by) for lease in retried.leases} == {("bad",), ()}
