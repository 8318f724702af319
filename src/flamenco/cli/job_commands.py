"""Commands about jobs: `flamenco submit` and the `jobs` group (list, watch, show, download,
pause, resume, cancel, requeue, unblock, delete, priority). The submit logic is `submit.py`'s,
following a job `watch.py`'s, fetching its files `download.py`'s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flamenco import wire
from flamenco.cli.base import (
    JsonOpt,
    ServerOpt,
    app,
    client,
    friendly_errors,
    jobs_app,
    print_json_list,
)
from flamenco.cli.console import err, listing, out
from flamenco.client import api_path
from flamenco.core.compiler import output_format_label


@app.command()
@friendly_errors
def submit(
    scene: Annotated[
        Path | None, typer.Argument(help="The .blend file of the job (none for ffmpeg).")
    ] = None,
    frames: Annotated[
        str | None, typer.Option(help="Frames, e.g. 1-10,15,20-24 (blender-render).")
    ] = None,
    job_type: Annotated[
        str,
        typer.Option(
            "--type", help="The job type; `flamenco job-types` lists them with their settings."
        ),
    ] = "blender-render",
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="A setting of the job type, read as its kind; repeatable (README: Job types).",
        ),
    ] = None,
    chunk: Annotated[
        str,
        typer.Option(
            help="Frames per task, or 'auto': tasks re-sized as frames render so that each "
            "takes about --task-seconds.",
        ),
    ] = "1",
    task_seconds: Annotated[
        float | None,
        typer.Option(help="With --chunk auto, the seconds each task should take [60]."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Job name \\[the file's name].")] = None,
    priority: Annotated[int, typer.Option(help="0-100, higher first.")] = 50,
    site: Annotated[
        list[str] | None, typer.Option("--site", help="Render only on this Manager; repeatable.")
    ] = None,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Submit even if dependencies are missing.")
    ] = False,
    device: Annotated[
        str, typer.Option(help="CPU, GPU (any), or CUDA, OPTIX, HIP, ONEAPI, METAL.")
    ] = "CPU",
    tag: Annotated[str | None, typer.Option(help="Only Workers with this tag.")] = None,
    min_blender: Annotated[str | None, typer.Option(help="Minimum Blender version.")] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            help="Blender's file format name, e.g. OPEN_EXR_MULTILAYER, OPEN_EXR, PNG, JPEG, "
            "TIFF \\[the scene's own output settings]."
        ),
    ] = None,
    preview_video: Annotated[
        bool,
        typer.Option("--preview-video", help="Also make preview.mp4 of all frames at the end."),
    ] = False,
    no_scripts: Annotated[
        bool,
        typer.Option(
            "--no-scripts",
            help="Do not run the file's own Python (drivers, registered text blocks) "
            "\\[they run, as on a workstation that trusts the file].",
        ),
    ] = False,
    tiles: Annotated[
        int | None,
        typer.Option(
            help="Render the one frame of --frames as this many regions on different "
            "Workers, joined by the Server (README: One frame over many machines).",
        ),
    ] = None,
    check_blank: Annotated[
        bool,
        typer.Option(
            "--check-blank",
            help="Fail a frame whose pixels all have the same value (e.g. a black render).",
        ),
    ] = False,
    persistent_data: Annotated[
        bool,
        typer.Option(
            "--persistent-data/--no-persistent-data",
            help="Let Cycles keep BVH and images between a job's frames on a Worker.",
        ),
    ] = True,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Follow the job with a progress bar until it ends; exit 0 completed, "
            "1 failed, 2 canceled.",
        ),
    ] = False,
    notify: Annotated[
        str | None,
        typer.Option(
            help="An http(s) URL the Server POSTs a signed JSON document to when the job "
            "completes, fails or is canceled (README: Notifications).",
        ),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(
            "--after",
            metavar="JOB[,JOB…]",
            help="Start only once these jobs have completed; repeatable or a comma list "
            "(README: Jobs that wait for jobs).",
        ),
    ] = None,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a scene and create a job (a render job unless --type); prints the job id."""
    from flamenco.cli.submit import SubmitRequest, parse_after, parse_chunk, submit_scene
    from flamenco.cli.watch import exit_code_of, watch_job

    api = client(server)
    settings: dict[str, Any] = {"render_device": device.upper()}
    if output_format:
        settings["output_format"] = output_format
    if tag:
        settings["worker_tag"] = tag
    if min_blender:
        settings["min_blender_version"] = min_blender
    if preview_video:
        settings["preview_video"] = True
    if not persistent_data:
        settings["persistent_data"] = False
    if no_scripts:
        settings["scripts"] = False
    if check_blank:
        settings["check_blank"] = True
    if tiles is not None:
        settings["tiles"] = tiles
    if task_seconds is not None:
        settings["task_seconds"] = task_seconds
    request = SubmitRequest(
        scene,
        frames,
        parse_chunk(chunk),
        name,
        priority,
        site or [],
        allow_missing,
        settings,
        notify,
        parse_after(after or []),
        job_type,
        assignments or [],
    )
    job = submit_scene(api, request)
    err.print(f"Submitted job {job.id} ({job.name}), {job.tasks_total} tasks.")
    if wait:
        job = watch_job(api, job.id)
        err.print(f"Job {job.id} {job.status}; frames in {job.output_dir}")
    if as_json:
        print(job.model_dump_json())
    else:
        print(job.id)
    if wait and exit_code_of(job):
        raise typer.Exit(exit_code_of(job))


NEWEST_JOBS = 100  # rows of `jobs list`: a table of thousands takes seconds and helps nobody


@jobs_app.command("list")
@friendly_errors
def jobs_list(
    server: ServerOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="How many of the newest jobs the table shows.")
    ] = NEWEST_JOBS,
    show_all: Annotated[bool, typer.Option("--all", help="Every job in the table.")] = False,
) -> None:
    """Jobs, newest first: the newest 100 in a table (a farm keeps months of them), every
    one with --all or --json."""
    jobs = client(server).call("GET", "/api/v1/jobs", wire.JobList).root
    if as_json:
        print_json_list(jobs)
        return
    shown = jobs if show_all else jobs[:limit]
    table = listing("name", "=status", "=progress", "=priority", "submitter", "=id")
    for j in shown:
        done = f"{j.frames_done}/{j.frames_total} " if j.frames_total else ""
        table.add_row(
            j.name, str(j.status), f"{done}{j.progress:.0%}", str(j.priority), j.submitter, j.id
        )
    out.print(table)
    if len(shown) < len(jobs):
        err.print(f"The newest {len(shown)} of {len(jobs)} jobs; --all shows every one.")


@jobs_app.command("watch")
@friendly_errors
def jobs_watch(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow a job with a progress bar until it ends; exit 0 completed, 1 failed, 2 canceled."""
    from flamenco.cli.watch import exit_code_of, watch_job

    job = watch_job(client(server), job_id)
    if as_json:
        print(job.model_dump_json())
    else:
        out.print(
            f"{job.name} ({job.id}) {job.status}, {job.frames_done}/{job.frames_total} frames"
        )
    if exit_code_of(job):
        raise typer.Exit(exit_code_of(job))


@jobs_app.command("show")
@friendly_errors
def jobs_show(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One job and its tasks."""
    api = client(server)
    job = api.call("GET", api_path("jobs", job_id), wire.Job)
    tasks = api.call("GET", api_path("jobs", job_id, "tasks"), wire.TaskList).root
    if as_json:
        doc = job.model_dump(mode="json") | {"tasks": [t.model_dump(mode="json") for t in tasks]}
        print(json.dumps(doc))
        return
    out.print(
        f"{job.name} ({job.id}) {job.status}, {job.progress:.0%}, "
        f"{job.frames_done}/{job.frames_total} frames, priority {job.priority}",
        style="bold",
    )
    out.print(f"Output folder: {job.output_dir}")
    if job.after:
        out.print(f"Starts after: {', '.join(job.after)}")
    out.print(f"Type: {job.type}")
    if job.frames_total:  # a job that renders frames (not a script's or a video's)
        out.print(f"Format: {output_format_label(job.settings, job.frame_extensions or [])}")
    if job.last_error:
        out.print(f"Last error: {job.last_error}", style="red")
    if job.waiting_reason:
        out.print(job.waiting_reason, style="yellow")
    if job.blocklist:
        out.print(f"Kept off this job after repeated failures: {', '.join(job.blocklist)}")
    table = listing("name", "=status", "=progress", "worker", "activity", "=task")
    for t in tasks:
        table.add_row(t.name, str(t.status), f"{t.progress:.0%}", t.worker or "", t.activity, t.id)
    out.print(table)


@jobs_app.command("download")
@friendly_errors
def jobs_download(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the frames into.")],
    server: ServerOpt = None,
) -> None:
    """Write a job's rendered frames, and its other files such as preview.mp4, into DEST."""
    from flamenco.cli.download import download_artifacts, download_frames

    api = client(server)
    written = download_frames(api, job_id, dest)
    err.print(f"{len(written)} frames written to {dest}")
    others = download_artifacts(api, job_id, dest)
    if others:
        err.print(f"Also written: {', '.join(p.name for p in others)}")


def _act(job_ids: list[str], action: str, server: str | None) -> None:
    api = client(server)
    for job_id in job_ids:
        job = api.call("POST", api_path("jobs", job_id, action), wire.Job)
        err.print(f"Job {job.id} is now {job.status}.")


JobIds = Annotated[list[str], typer.Argument(metavar="JOB...", help="One or more job ids.")]


@jobs_app.command("pause")
@friendly_errors
def jobs_pause(job_ids: JobIds, server: ServerOpt = None) -> None:
    """Pause jobs: running renders stop; what was rendered stays."""
    _act(job_ids, "pause", server)


@jobs_app.command("resume")
@friendly_errors
def jobs_resume(job_ids: JobIds, server: ServerOpt = None) -> None:
    """Resume paused jobs: the remaining frames are rendered."""
    _act(job_ids, "resume", server)


@jobs_app.command("cancel")
@friendly_errors
def jobs_cancel(job_ids: JobIds, server: ServerOpt = None) -> None:
    """Cancel jobs: running renders stop within seconds."""
    _act(job_ids, "cancel", server)


@jobs_app.command("requeue")
@friendly_errors
def jobs_requeue(
    job_ids: JobIds,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only failed or canceled tasks.")
    ] = False,
    server: ServerOpt = None,
) -> None:
    """Render jobs again: everything, or only what failed. Every Worker may try again."""
    _act(job_ids, "requeue-failed" if failed else "requeue", server)


@jobs_app.command("unblock")
@friendly_errors
def jobs_unblock(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    worker: Annotated[
        str | None, typer.Argument(metavar="[WORKER]", help="Only this Worker \\[all].")
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Let Workers kept off a job after repeated failures take its tasks again."""
    request = wire.JobUnblock(worker=worker)
    job = client(server).call("POST", api_path("jobs", job_id, "unblock"), wire.Job, request)
    who = f"Worker {worker} may" if worker else "Every Worker may"
    kept_off = ", ".join(job.blocklist) or "none"
    err.print(f"{who} run job {job.id} again; kept off it now: {kept_off}.")


@jobs_app.command("delete")
@friendly_errors
def jobs_delete(job_ids: JobIds, server: ServerOpt = None) -> None:
    """Delete jobs with their frames and the files no other job uses."""
    api = client(server)
    for job_id in job_ids:
        api.request("DELETE", api_path("jobs", job_id))
        err.print(f"Job {job_id} deleted.")


@jobs_app.command("priority")
@friendly_errors
def jobs_priority(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    priority: Annotated[int, typer.Argument(help="0-100, higher first.")],
    server: ServerOpt = None,
) -> None:
    """Change a job's priority."""
    change = wire.PriorityChange(priority=priority)
    job = client(server).call("PUT", api_path("jobs", job_id, "priority"), wire.Job, change)
    err.print(f"Job {job.id} now has priority {job.priority}.")
