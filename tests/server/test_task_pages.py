"""Pages of a job's tasks and the runs of its timeline, on a real SQLite file and a real
PostgreSQL: what the Dashboard asks for instead of every task and the whole history."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serverkit import add_job, add_manager, alice, lease_sync, make_services, task_update

from flamenco.core.actions import JobAction
from flamenco.core.states import TaskStatus
from flamenco.errors import NotFound, Unprocessable
from flamenco.server.job_views import MAX_TASK_PAGE
from flamenco.server.services import ServerServices

TASKS = 250
T = TaskStatus


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def big(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerServices, str]]:
    """A job of 250 one-frame tasks: 0-2 completed (0 and 2 by w1, 1 by Render-B), 3 active
    on Render-B, 4 soft-failed, 5 leased, the rest queued."""
    for svc in make_services(request, tmp_path_factory.mktemp("pages")):
        site = add_manager(svc, "site")
        job = add_job(svc, f"1-{TASKS}")
        leases = [lease.task_id for lease in lease_sync(svc, site, want=6).leases]
        workers = ["w1", "Render-B", "w1", "Render-B", "w1"]
        for task_id, worker in zip(leases, workers, strict=False):
            svc.leases.apply_updates(site, [task_update(task_id, T.ACTIVE, worker=worker)])
        for task_id, worker in zip(leases[:3], workers, strict=False):
            svc.leases.apply_updates(site, [task_update(task_id, T.COMPLETED, worker=worker)])
        svc.leases.apply_updates(site, [task_update(leases[4], T.FAILED, worker="w1")])
        yield svc, job.id


def indices(page: object) -> list[int]:
    return [task.index for task in page.tasks]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("offset", "limit", "status", "search", "expected", "matching"),
    [
        (0, 100, "", "", list(range(100)), TASKS),
        (100, 100, "", "", list(range(100, 200)), TASKS),
        (200, 100, "", "", list(range(200, 250)), TASKS),  # the last page is shorter
        (250, 100, "", "", [], TASKS),  # past the end: nothing, still counted
        (0, 0, "", "", [], TASKS),  # only the counts and the start
        (0, MAX_TASK_PAGE, "", "", list(range(TASKS)), TASKS),
        (0, 100, "completed", "", [0, 1, 2], 3),
        (1, 1, "completed", "", [1], 3),
        (0, 100, "active", "", [3], 1),
        (0, 100, "soft-failed", "", [4], 1),
        (0, 100, "leased", "", [5], 1),
        (0, 3, "queued", "", [6, 7, 8], TASKS - 6),
        (0, 100, "failed", "", [], 0),  # a status no task has
        (0, 100, "", "render 12", [11, *range(119, 129)], 11),  # in the name: its frames
        (0, 100, "", "RENDER-b", [1, 3], 2),  # in the Worker, whatever the case
        (0, 100, "completed", "render-b", [1], 1),
        (0, 100, "", "%", [], 0),  # SQL wildcards are plain characters
        (0, 100, "", "render_1", [], 0),
    ],
)
def test_a_page_holds_the_tasks_asked_for_in_their_order(
    big: tuple[ServerServices, str],
    offset: int,
    limit: int,
    status: str,
    search: str,
    expected: list[int],
    matching: int,
) -> None:
    svc, job_id = big
    page = svc.jobs.task_page(job_id, offset, limit, status, search)
    assert indices(page) == expected
    assert (page.matching, page.offset, page.limit, page.total) == (matching, offset, limit, TASKS)
    assert page.counts == {
        "completed": 3,
        "active": 1,
        "soft-failed": 1,
        "leased": 1,
        "queued": 244,
    }


def test_a_page_brings_the_runs_of_its_tasks_and_the_jobs_start(
    big: tuple[ServerServices, str],
) -> None:
    svc, job_id = big
    page = svc.jobs.task_page(job_id, 0, 4)
    runs = [(r.task_name, r.worker, r.outcome, r.end is None) for r in page.runs]
    assert runs == [
        ("render 1", "w1", "completed", False),
        ("render 2", "Render-B", "completed", False),
        ("render 3", "w1", "completed", False),
        ("render 4", "Render-B", "running", True),
    ]
    assert page.started == page.runs[0].start
    (failed,) = svc.jobs.task_page(job_id, 4, 1).runs
    assert (failed.task_name, failed.outcome) == ("render 5", "soft-failed")
    assert svc.jobs.task_page(job_id, 5, 100).runs == []  # never rendered


@pytest.mark.parametrize(
    ("offset", "limit", "status", "search", "why"),
    [
        (-1, 100, "", "", "The offset must be 0 or more, not -1."),
        (0, -1, "", "", f"The limit must be from 0 to {MAX_TASK_PAGE}, not -1."),
        (0, MAX_TASK_PAGE + 1, "", "", f"The limit must be from 0 to {MAX_TASK_PAGE}, not"),
        (0, 100, "done", "", "'done' is not a task status; the statuses are: queued, leased,"),
        (0, 100, "Completed", "", "'Completed' is not a task status"),
        (0, 100, "", "x" * 201, "The text to look for must be at most 200 characters."),
    ],
)
def test_a_page_that_cannot_be_given_is_refused_in_one_sentence(
    big: tuple[ServerServices, str], offset: int, limit: int, status: str, search: str, why: str
) -> None:
    svc, job_id = big
    with pytest.raises(Unprocessable) as refused:
        svc.jobs.task_page(job_id, offset, limit, status, search)
    assert refused.value.message.startswith(why)
    assert refused.value.message.endswith(".") and refused.value.status_code == 422


def test_an_unknown_job_has_no_pages_and_no_runs(big: tuple[ServerServices, str]) -> None:
    svc, _ = big
    for ask in (lambda: svc.jobs.task_page("nope"), lambda: svc.jobs.runs("nope")):
        with pytest.raises(NotFound, match=r"There is no job with id 'nope'\."):
            ask()


def test_the_runs_of_a_job_are_its_timeline(big: tuple[ServerServices, str]) -> None:
    svc, job_id = big
    timeline = svc.jobs.runs(job_id)
    runs = [(r.task_name, r.worker, r.outcome) for r in timeline.runs]
    assert runs == [
        ("render 1", "w1", "completed"),
        ("render 2", "Render-B", "completed"),
        ("render 3", "w1", "completed"),
        ("render 4", "Render-B", "running"),
        ("render 5", "w1", "soft-failed"),  # reported failed; the Server will run it again
    ]
    assert timeline.started == timeline.runs[0].start
    assert all(r.start <= (r.end or r.start) for r in timeline.runs)


def test_a_run_stopped_by_a_job_action_ends_when_its_task_did(
    big: tuple[ServerServices, str],
) -> None:
    svc, _ = big  # a job of its own beside the big one, ahead of it
    site = add_manager(svc, "other site")
    job = add_job(svc, "1-2", priority=90)
    assert svc.jobs.runs(job.id).started is None
    assert svc.jobs.task_page(job.id).started is None
    (lease,) = lease_sync(svc, site, want=1).leases
    assert lease.job_id == job.id
    svc.leases.apply_updates(site, [task_update(lease.task_id, T.ACTIVE, worker="w1")])
    assert [r.outcome for r in svc.jobs.runs(job.id).runs] == ["running"]

    svc.jobs.act(job.id, JobAction.CANCEL, alice(svc))  # no report from the Worker
    (run,) = svc.jobs.runs(job.id).runs
    (task, _) = svc.jobs.task_page(job.id).tasks
    assert run.outcome == "canceled" and run.end is not None and run.start <= run.end
    assert run.end.replace(tzinfo=None) == task.updated.replace(tzinfo=None)
