"""Pages of a job's rendered frames, on a real SQLite file and a real PostgreSQL: what the
Dashboard's thumbnails ask for instead of every frame of a job of 100,000."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator

import pytest
from PIL import Image
from serverkit import add_job, add_manager, lease_sync, make_services, one_chunk

from flamenco.errors import NotFound, Unprocessable
from flamenco.server.job_views import MAX_TASK_PAGE
from flamenco.server.services import ServerServices

RENDERED = [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]  # frame 5 not yet: frames arrive in any order


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerServices, str]]:
    """A job of frames 1-12, one task each, whose frames but 5 were received, last first."""
    for svc in make_services(request, tmp_path_factory.mktemp("frames")):
        site = add_manager(svc, "site")
        job = add_job(svc, "1-12")
        leases = {lease.frames[0]: lease for lease in lease_sync(svc, site, want=12).leases}
        for frame in reversed(RENDERED):
            data = _png(frame)
            sha = hashlib.sha256(data).hexdigest()
            name = f"frame_{frame:04d}.png"
            task_id = leases[frame].task_id
            asyncio.run(svc.jobs.receive_frame(site.id, task_id, frame, name, sha, one_chunk(data)))
        yield svc, job.id


def _png(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 16), (shade * 20, 0, 0)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("offset", "limit", "expected"),
    [
        (0, 48, RENDERED),
        (0, 4, [1, 2, 3, 4]),
        (4, 4, [6, 7, 8, 9]),  # the fifth frame received is 6: 5 is not there
        (8, 4, [10, 11, 12]),  # the last page is shorter
        (11, 4, []),  # past the end: nothing, still counted
        (0, 0, []),  # only the count
    ],
)
def test_a_page_of_frames_in_frame_order_with_the_count(
    rendered: tuple[ServerServices, str], offset: int, limit: int, expected: list[int]
) -> None:
    svc, job_id = rendered
    page = svc.jobs.frame_page(job_id, offset, limit)
    assert [frame.frame for frame in page.frames] == expected
    assert (page.total, page.offset, page.limit) == (len(RENDERED), offset, limit)
    assert [f.filename for f in page.frames] == [f"frame_{n:04d}.png" for n in expected]
    assert all((f.width, f.height) == (32, 16) for f in page.frames)
    everything = {f.frame: f for f in svc.jobs.frames(job_id)}  # the whole list agrees
    assert page.frames == [everything[n] for n in expected]


@pytest.mark.parametrize(
    ("offset", "limit", "sentence"),
    [
        (-1, 10, "The offset must be 0 or more, not -1."),
        (0, -1, f"The limit must be from 0 to {MAX_TASK_PAGE}, not -1."),
        (0, MAX_TASK_PAGE + 1, f"The limit must be from 0 to {MAX_TASK_PAGE}, not 1001."),
    ],
)
def test_a_page_that_cannot_be_given_is_refused_with_one_sentence(
    rendered: tuple[ServerServices, str], offset: int, limit: int, sentence: str
) -> None:
    svc, job_id = rendered
    with pytest.raises(Unprocessable) as refused:
        svc.jobs.frame_page(job_id, offset, limit)
    assert refused.value.message == sentence


def test_the_frames_of_a_job_that_does_not_exist_are_a_404(
    rendered: tuple[ServerServices, str],
) -> None:
    svc, _ = rendered
    with pytest.raises(NotFound):
        svc.jobs.frame_page("nosuchjob", 0, 10)
