"""`ffmpeg`: the preview video, a job's rendered frames in frame order as one H.264 MP4.

The Server leases an 'ffmpeg' task with the job's frames as its files (see
`core.compiler.preview_frame_path`), so the Worker fetches them through its Manager's cache
like any job file. Here they are linked into a numbered sequence without gaps, encoded by the
FFmpeg that the imageio-ffmpeg wheel ships, and the MP4 is sent as an artifact of the task,
ahead of the task's completion. Parameters: fps (default 24).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath

from flamenco.blobs import safe_join
from flamenco.commands import CommandFailed, CommandTask, Reporter
from flamenco.core.compiler import PREVIEW_FRAMES_DIR
from flamenco.images import exr_beauty, is_exr
from flamenco.procs import spawn_options

log = logging.getLogger("flamenco.commands.ffmpeg")

PREVIEW_NAME = "preview.mp4"
DEFAULT_FPS = 24
CRF = 18  # x264 quality: visually close to the frames, still small
STREAM_LIMIT = 1024 * 1024
# Even width and height, which H.264 in yuv420p needs; odd sizes grow by one pixel.
EVEN_SIZE = "scale=ceil(iw/2)*2:ceil(ih/2)*2"


class EncodingFailed(CommandFailed):
    """FFmpeg could not make the video; the message says why in one sentence."""


def ffmpeg_exe() -> str:
    """The FFmpeg binary of the imageio-ffmpeg wheel (or IMAGEIO_FFMPEG_EXE)."""
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise EncodingFailed(f"FFmpeg is not available on this Worker: {exc}") from None


def ordered_frames(files: Iterable[str], job_dir: Path) -> list[tuple[int, Path]]:
    """The fetched frames of a preview task, (frame, path) by frame number."""
    found = []
    for relpath in files:
        parts = PurePosixPath(relpath).parts
        if len(parts) == 3 and parts[0] == PREVIEW_FRAMES_DIR:
            with contextlib.suppress(ValueError):
                found.append((int(parts[1]), safe_join(job_dir, relpath)))
    return sorted(found)


async def encode_video(
    frames: Sequence[Path],
    dest: Path,
    fps: int = DEFAULT_FPS,
    on_progress: Callable[[int], None] | None = None,
    on_log: Callable[[str], None] | None = None,
) -> None:
    """Encode image files, in the order given, into an H.264 (yuv420p) MP4 at `dest`.

    Gaps in the frame numbers do not matter: the images are linked into a sequence numbered
    1, 2, 3… first. `on_progress` hears how many frames are encoded so far, `on_log` every
    line FFmpeg writes (warnings and errors only). `dest` appears only once it is complete.
    """
    if not frames:
        raise EncodingFailed("There are no rendered frames to make a video of.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix="sequence-") as tmp:
        suffix = await asyncio.to_thread(_sequence, frames, Path(tmp))
        argv = [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-loglevel",
            "warning",
            "-progress",
            "pipe:1",
            "-y",
            "-framerate",
            str(fps),
            "-start_number",
            "1",
            "-i",
            str(Path(tmp) / f"%06d{suffix}"),
            "-vf",
            EVEN_SIZE,
            "-c:v",
            "libx264",
            "-preset",
            "medium",
            "-crf",
            str(CRF),
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(partial),
        ]
        try:
            encoded, last = await _run_ffmpeg(argv, on_progress, on_log)
            if encoded != len(frames):  # FFmpeg skips an unreadable image with a warning only
                why = f": {last}" if last else ""
                raise EncodingFailed(f"FFmpeg encoded {encoded} of {len(frames)} frames{why}")
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(dest)


async def _run_ffmpeg(
    argv: list[str],
    on_progress: Callable[[int], None] | None,
    on_log: Callable[[str], None] | None,
) -> tuple[int, str]:
    """Run FFmpeg to the end; return the frames it encoded and its last log line.

    Raises EncodingFailed when it fails.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=STREAM_LIMIT,
            **spawn_options(own_group=False),
        )
    except OSError as exc:
        raise EncodingFailed(f"FFmpeg could not be started: {exc}") from None
    last_line, encoded = "", 0

    async def read_progress() -> None:
        nonlocal encoded
        assert proc.stdout is not None
        async for raw in proc.stdout:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key == "frame" and value.isdigit():
                encoded = int(value)
                if on_progress is not None:
                    on_progress(encoded)

    async def read_log() -> None:
        nonlocal last_line
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                last_line = line
                if on_log is not None:
                    on_log(line)

    try:
        await asyncio.gather(read_progress(), read_log())
        code = await proc.wait()
    except BaseException:  # canceled: FFmpeg must not go on encoding for nobody
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if code != 0:
        why = f": {last_line}" if last_line else ""
        raise EncodingFailed(f"FFmpeg failed with exit status {code}{why}")
    return encoded, last_line


def _sequence(frames: Sequence[Path], folder: Path) -> str:
    """Put the frames into `folder` as 000001<suffix>, 000002<suffix>…; returns the suffix.

    Frames FFmpeg reads are linked; EXR frames become 8-bit sRGB PNGs of their beauty first,
    which FFmpeg's own EXR reader cannot find in a multilayer file (`flamenco.images`).
    """
    if not is_exr(frames[0]):  # every frame of a job has the job's output format
        suffix = frames[0].suffix
        for number, frame in enumerate(frames, 1):
            _link(frame, folder / f"{number:06d}{suffix}")
        return suffix
    for number, frame in enumerate(frames, 1):
        try:
            exr_beauty(frame).save(folder / f"{number:06d}.png", compress_level=1)
        except Exception as exc:  # the file is not what its job said it would be
            raise EncodingFailed(f"Frame file {frame.name} could not be read: {exc}") from None
    return ".png"


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


class PreviewVideo:
    name = "ffmpeg"

    async def run(self, task: CommandTask, report: Reporter) -> None:
        frames = ordered_frames(task.files, task.job_dir)
        missing = sorted(set(task.frames) - {frame for frame, _ in frames})
        if missing:
            report.log(
                f"WARNING: {len(missing)} frame(s) were never rendered and are left out, "
                f"e.g. frame {missing[0]}"
            )
        fps = int(task.parameters.get("fps") or DEFAULT_FPS)
        total = len(frames)
        report.log(f"encoding {total} frames at {fps} fps into {PREVIEW_NAME}")
        report.progress(0.0, f"encoding {total} frames")
        dest = task.out_dir / PREVIEW_NAME

        def on_progress(encoded: int) -> None:
            report.progress(encoded / max(total, 1), f"encoding frame {encoded}/{total}")

        def on_log(line: str) -> None:
            report.log(f"ffmpeg: {line}")

        await encode_video([path for _, path in frames], dest, fps, on_progress, on_log)
        report.log(f"{PREVIEW_NAME}: {total} frames, {dest.stat().st_size} bytes")
        await report.output(dest, name=PREVIEW_NAME)
        log.info(
            "task %s: %s made of %d frames",
            task.task_id,
            PREVIEW_NAME,
            total,
            extra={"job": task.job_id, "task": task.task_id},
        )


COMMAND = PreviewVideo()
