"""The Server's routes for jobs: submit, list, act on, delete; their tasks, logs, history,
frames and other files; and the event stream that says what changed."""

from __future__ import annotations

import pathlib
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse

from flamenco import wire
from flamenco.apidoc import ARTIFACT_TYPES, FRAME_TYPES, body_answer, error_answers
from flamenco.core import media
from flamenco.core.actions import JobAction
from flamenco.server.deps import AnyUser, Services
from flamenco.server.frame_views import frame_view
from flamenco.server.job_views import FRAME_PAGE


def job_file(path: pathlib.Path, filename: str) -> FileResponse:
    """A frame or artifact: shown if it is an image or video, else a download (core/media.py)."""
    media_type, disposition = media.file_type(filename)
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        content_disposition_type=disposition,
        headers=media.NOSNIFF,
    )


def install_job_routes(app: FastAPI) -> None:
    """Jobs, their files and the event stream, on the Server's app."""

    @app.get(
        "/api/v1/events",
        response_class=StreamingResponse,
        responses=body_answer("text/event-stream") | error_answers(404),
    )
    def events(
        _: AnyUser,
        svc: Services,
        job: Annotated[
            str | None, Query(max_length=200, description="Only the events of this job.")
        ] = None,
    ) -> StreamingResponse:
        """Server-sent events naming what changed: job, task, frame, log, managers. The stream
        begins with the comment `: connected` once it is subscribed."""
        if job is not None:
            svc.jobs.get(job)  # a job that does not exist: 404 and its sentence
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            svc.events.stream(job), media_type="text/event-stream", headers=headers
        )

    @app.post("/api/v1/jobs", status_code=201, responses=error_answers(415))
    def submit_job(sub: wire.JobSubmission, user: AnyUser, svc: Services) -> wire.Job:
        return svc.jobs.submit(sub, submitter=user.name)

    @app.get("/api/v1/jobs")
    def list_jobs(_: AnyUser, svc: Services) -> list[wire.Job]:
        return svc.jobs.list()

    @app.get("/api/v1/jobs/{job_id}")
    def get_job(job_id: str, _: AnyUser, svc: Services) -> wire.Job:
        return svc.jobs.get(job_id)

    # Before the route of the other actions, whose {action} would take this one too.
    @app.post("/api/v1/jobs/{job_id}/unblock")
    def job_unblock(job_id: str, req: wire.JobUnblock, user: AnyUser, svc: Services) -> wire.Job:
        return svc.jobs.unblock(job_id, req.worker, user)

    @app.post("/api/v1/jobs/{job_id}/{action}")
    def job_action(job_id: str, action: JobAction, user: AnyUser, svc: Services) -> wire.Job:
        return svc.jobs.act(job_id, action, user)

    @app.put("/api/v1/jobs/{job_id}/priority")
    def job_priority(
        job_id: str, change: wire.PriorityChange, user: AnyUser, svc: Services
    ) -> wire.Job:
        return svc.jobs.set_priority(job_id, change.priority, user)

    @app.delete("/api/v1/jobs/{job_id}", status_code=204)
    def delete_job(job_id: str, user: AnyUser, svc: Services) -> None:
        svc.jobs.delete(job_id, user)

    @app.get("/api/v1/jobs/{job_id}/tasks")
    def job_tasks(job_id: str, _: AnyUser, svc: Services) -> list[wire.Task]:
        return svc.jobs.tasks(job_id)

    @app.get("/api/v1/jobs/{job_id}/tasks/page")
    def job_task_page(
        job_id: str,
        _: AnyUser,
        svc: Services,
        offset: int = 0,
        limit: int = 100,
        status: str = "",
        search: str = "",
    ) -> wire.TaskPage:
        """Some of a job's tasks, in their order; see `JobService.task_page`."""
        return svc.jobs.task_page(job_id, offset, limit, status, search)

    @app.get("/api/v1/jobs/{job_id}/runs")
    def job_runs(job_id: str, _: AnyUser, svc: Services, last: int | None = None) -> wire.JobRuns:
        """Every run of the job's tasks, or with `last` those of its last tasks to start."""
        return svc.jobs.runs(job_id, last)

    @app.get("/api/v1/jobs/{job_id}/tasks/{task_id}/log", response_class=PlainTextResponse)
    def task_log(job_id: str, task_id: str, _: AnyUser, svc: Services) -> str:
        return svc.jobs.task_log(job_id, task_id)

    @app.get("/api/v1/jobs/{job_id}/history")
    def job_history(job_id: str, _: AnyUser, svc: Services) -> list[wire.TaskEvent]:
        return svc.jobs.history(job_id)

    # ---- a job's files -----------------------------------------------------------------------

    @app.get("/api/v1/jobs/{job_id}/frames")
    def job_frames(job_id: str, _: AnyUser, svc: Services) -> list[wire.FrameInfo]:
        return svc.jobs.frames(job_id)

    # Before the route of one frame, whose {frame} would take "page" too.
    @app.get("/api/v1/jobs/{job_id}/frames/page")
    def job_frame_page(
        job_id: str, _: AnyUser, svc: Services, offset: int = 0, limit: int = FRAME_PAGE
    ) -> wire.FramePage:
        """Some of a job's frames, in frame order, and how many it has; see
        `JobService.frame_page`."""
        return svc.jobs.frame_page(job_id, offset, limit)

    @app.get(
        "/api/v1/jobs/{job_id}/frames/{frame}",
        response_class=FileResponse,
        responses=body_answer(*FRAME_TYPES),
    )
    def frame_file(job_id: str, frame: int, _: AnyUser, svc: Services) -> FileResponse:
        path, filename = svc.jobs.frame_file(job_id, frame)
        return job_file(path, filename)

    @app.get(
        "/api/v1/jobs/{job_id}/frames/{frame}/thumbnail",
        response_class=FileResponse,
        responses=body_answer("image/jpeg"),
    )
    def frame_thumbnail(job_id: str, frame: int, _: AnyUser, svc: Services) -> FileResponse:
        path = svc.jobs.thumbnail(job_id, frame)
        return FileResponse(path, media_type="image/jpeg", headers=media.NOSNIFF)

    @app.get(
        "/api/v1/jobs/{job_id}/frames/{frame}/view",
        response_class=FileResponse,
        responses=body_answer(*media.BROWSER_IMAGE_TYPES),
    )
    def frame_view_file(job_id: str, frame: int, _: AnyUser, svc: Services) -> FileResponse:
        """The frame as a browser shows it: itself, or a JPEG made from it (an EXR's beauty)."""
        path, media_type = frame_view(svc.jobs, job_id, frame)
        return FileResponse(path, media_type=media_type, headers=media.NOSNIFF)

    @app.get("/api/v1/jobs/{job_id}/artifacts")
    def job_artifacts(job_id: str, _: AnyUser, svc: Services) -> list[wire.ArtifactInfo]:
        return svc.jobs.artifacts(job_id)

    # `:path`: an artifact's name is its path in the job's folder (cache/fluid_0001.vdb).
    @app.get(
        "/api/v1/jobs/{job_id}/artifacts/{name:path}",
        response_class=FileResponse,
        responses=body_answer(*ARTIFACT_TYPES),
    )
    def artifact_file(job_id: str, name: str, _: AnyUser, svc: Services) -> FileResponse:
        return job_file(svc.jobs.artifact_file(job_id, name), pathlib.PurePosixPath(name).name)
