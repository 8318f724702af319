"""Taking in what a job's tasks produce: frames (with their thumbnails) and other files
such as a preview video, streamed from the Managers into blobs and placed in the job's output
folder (`outputs.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import uuid
from collections.abc import AsyncIterable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from flamenco import wire
from flamenco.blobs import BlobStore
from flamenco.core.names import check_artifact_name, check_frame_file_name, quote_name
from flamenco.core.tiles import tile_file_name
from flamenco.db import utcnow
from flamenco.errors import (
    BadRequest,
    FlamencoError,
    NotFound,
    writing,
)
from flamenco.frame_check import BadFrame, FrameExpectation, check_frame, job_expectation
from flamenco.images import image_size, save_jpeg
from flamenco.server.events import EventBus
from flamenco.server.job_views import artifact_to_wire, job_or_404, thumbnail_path
from flamenco.server.models import (
    BlobRow,
    JobArtifact,
    OutputRow,
    TaskRow,
)
from flamenco.server.outputs import place_output, remove_output
from flamenco.tile_join import TilesDoNotJoin, join_tiles

log = logging.getLogger("flamenco.server.output_intake")

_Output = TypeVar("_Output", OutputRow, JobArtifact)

THUMBNAIL_SIZE = 256  # longest side, in pixels
THUMBNAIL_QUALITY = 80


class OutputIntake:
    """The output side of JobService (server/jobs.py), which provides these attributes."""

    sessions: sessionmaker
    blobs: BlobStore
    events: EventBus
    thumbnails_root: Path

    async def receive_frame(
        self,
        manager_id: int,
        task_id: str,
        frame: int,
        filename: str,
        sha256: str,
        body: AsyncIterable[bytes],
    ) -> wire.FrameInfo:
        check_frame_file_name(filename)
        with self.sessions() as s:
            task = s.get(TaskRow, task_id)
            if task is None or task.manager_id != manager_id:
                raise NotFound(f"Task '{task_id}' is not leased to this Manager.")
            if frame not in task.frames:
                raise BadRequest(f"Frame {frame} is not one of the frames of task '{task_id}'.")
            job_id = task.job_id
            expect = job_expectation(job_or_404(s, job_id).settings)
            tile = task.command.get("tile")
        frame_expect = expect
        if tile:  # mostly unrendered: the joined frame is checked for blankness instead
            expect = dataclasses.replace(expect, check_blank=False)
        had_blob = self.blobs.has(sha256)
        with writing(f"Frame {frame} of job {job_id}"):
            digest = await self.blobs.put_stream(body, expected=sha256)
        try:  # checked again as it arrives: a bad frame is a 422 and nothing of it is kept
            await asyncio.to_thread(check_frame, self.blobs.path(digest), filename, frame, expect)
        except BadFrame as exc:
            if not had_blob:
                self.blobs.path(digest).unlink(missing_ok=True)
            log.warning("task %s: %s", task_id, exc.message, extra={"job": job_id, "task": task_id})
            raise
        if tile:
            return await asyncio.to_thread(
                self._take_tile, job_id, task_id, frame, filename, digest, tile, frame_expect
            )
        # Off the event loop: making the thumbnail of a large frame takes a while.
        return await asyncio.to_thread(self._record_frame, job_id, task_id, frame, filename, digest)

    def _record_frame(
        self, job_id: str, task_id: str, frame: int, filename: str, digest: str
    ) -> wire.FrameInfo:
        path = self.blobs.path(digest)
        width = height = None
        try:
            width, height = image_size(path)
        except Exception:
            log.info("frame %d of job %s: size unknown", frame, job_id, extra={"job": job_id})
        with self._record_output(
            OutputRow,
            {"frame": frame},
            job_id,
            task_id,
            digest,
            filename,
            what=f"Frame {frame} ({quote_name(filename)}) of job {job_id}",
            placed=lambda: self._write_thumbnail(job_id, frame, path),
        ) as row:
            row.width, row.height, row.filename = width, height, filename
            size = row.size
        self.events.publish("frame", job_id=job_id, frame=frame)
        self.events.publish("job", id=job_id)
        return wire.FrameInfo(
            frame=frame,
            task_id=task_id,
            sha256=digest,
            size=size,
            width=width,
            height=height,
            filename=filename,
        )

    def _take_tile(
        self,
        job_id: str,
        task_id: str,
        frame: int,
        filename: str,
        digest: str,
        tile: dict[str, int],
        expect: FrameExpectation,
    ) -> wire.FrameInfo:
        """Keep a tile in the job's tiles folder until its frame's last tile lands, then join
        them (tile_join.py), check the frame as any frame and record it; the tiles go then.
        Tiles are never frames: the job's frame list and downloads have the joined one only."""
        index, count = int(tile["index"]), int(tile["count"])
        folder = self.thumbnails_root / job_id / "tiles" / str(frame)
        what = f"Tile {index + 1} of {count} of frame {frame} of job {job_id}"
        source = self.blobs.path(digest)
        place_output(source, folder, tile_file_name(filename, index, count), what)
        size = source.stat().st_size
        if not self._referenced(digest):
            source.unlink(missing_ok=True)  # the blob store keeps frames, not tiles
        tiles = [folder / tile_file_name(filename, i, count) for i in range(count)]
        if not all(path.is_file() for path in tiles):
            log.info("job %s: %s arrived", job_id, what, extra={"job": job_id, "task": task_id})
            name = tile_file_name(filename, index, count)
            return wire.FrameInfo(
                frame=frame,
                task_id=task_id,
                sha256=digest,
                size=size,
                width=None,
                height=None,
                filename=name,
            )
        joined = folder / f"joined-{uuid.uuid4().hex}"
        try:
            try:
                join_tiles(tiles, joined)
            except TilesDoNotJoin as exc:
                raise BadFrame(str(exc)) from None
            check_frame(joined, filename, frame, expect)
            with writing(f"Frame {frame} of job {job_id}"):
                joined_digest = self.blobs.put_file(joined)
        finally:
            joined.unlink(missing_ok=True)
        info = self._record_frame(job_id, task_id, frame, filename, joined_digest)
        shutil.rmtree(folder, ignore_errors=True)
        log.info(
            "job %s: frame %d joined from %d tiles",
            job_id,
            frame,
            count,
            extra={"job": job_id, "task": task_id},
        )
        return info

    def _referenced(self, digest: str) -> bool:
        with self.sessions() as s:
            return s.get(BlobRow, digest) is not None

    def _write_thumbnail(self, job_id: str, frame: int, source: Path) -> None:
        """A small JPEG of the frame for the Dashboard (of an EXR, its beauty in sRGB); none for
        what neither Pillow nor OpenEXR can read."""
        dest = thumbnail_path(self.thumbnails_root, job_id, frame)
        try:
            save_jpeg(source, dest, THUMBNAIL_QUALITY, max_side=THUMBNAIL_SIZE)
        except Exception as exc:
            dest.unlink(missing_ok=True)  # a thumbnail of an earlier render would be wrong
            log.info(
                "frame %d of job %s: no thumbnail (%s)", frame, job_id, exc, extra={"job": job_id}
            )

    @contextlib.contextmanager
    def _record_output(
        self,
        model: type[_Output],
        key: dict[str, Any],
        job_id: str,
        task_id: str,
        digest: str,
        name: str,
        *,
        what: str,
        placed: Callable[[], None] | None = None,
    ) -> Iterator[_Output]:
        """Store an output that arrived as a blob, a frame or another file: its file placed in
        the job's output folder as `name` (then `placed` runs: the frame's thumbnail), then in
        one transaction its blob's row and its own row (the job's `model` row with `key`, made
        when new) holding the task, hash and size; the caller fills in the rest. The file first,
        then its row: frames_done never counts a file that is not there."""
        path = self.blobs.path(digest)
        size = path.stat().st_size
        dest = self._place(job_id, path, name, what)
        if placed is not None:
            placed()
        with self._committing(dest) as s:
            job_or_404(s, job_id)
            if s.get(BlobRow, digest) is None:
                s.add(BlobRow(sha256=digest, size=size))
            row = s.scalar(select(model).filter_by(job_id=job_id, **key))
            if row is None:
                row = model(job_id=job_id, **key)
                s.add(row)
            row.task_id, row.sha256, row.size = task_id, digest, size
            yield row

    def _place(self, job_id: str, source: Path, name: str, what: str) -> Path:
        """Put an output's file in place in the job's output folder, or say why it cannot be."""
        with self.sessions() as s:
            output_dir = Path(job_or_404(s, job_id).output_dir)
        try:
            return place_output(source, output_dir, name, what)
        except FlamencoError as exc:
            log.error("job %s: %s", job_id, exc.message, extra={"job": job_id})
            raise

    @contextlib.contextmanager
    def _committing(self, placed: Path) -> Iterator[Session]:
        """A transaction for the row of a file just placed; the file goes if the row cannot
        be committed (its job was deleted meanwhile), leaving nothing behind."""
        try:
            with self.sessions.begin() as s:
                yield s
        except BaseException:
            remove_output(placed)
            raise

    async def receive_artifact(
        self,
        manager_id: int,
        task_id: str,
        name: str,
        sha256: str,
        body: AsyncIterable[bytes],
    ) -> wire.ArtifactInfo:
        check_artifact_name(name)
        with self.sessions() as s:
            task = s.get(TaskRow, task_id)
            if task is None or task.manager_id != manager_id:
                raise NotFound(f"Task '{task_id}' is not leased to this Manager.")
            job_id = task.job_id
        with writing(f"The file {quote_name(name)} of job {job_id}"):
            digest = await self.blobs.put_stream(body, expected=sha256)
        return await asyncio.to_thread(self._record_artifact, job_id, task_id, name, digest)

    def _record_artifact(
        self, job_id: str, task_id: str, name: str, digest: str
    ) -> wire.ArtifactInfo:
        what = f"The file {quote_name(name)} of job {job_id}"
        with self._record_output(
            JobArtifact, {"name": name}, job_id, task_id, digest, name, what=what
        ) as row:
            row.created = utcnow()
            info = artifact_to_wire(row)
        log.info("job %s: %s stored (%d bytes)", job_id, name, info.size, extra={"job": job_id})
        self.events.publish("job", id=job_id)
        return info
