"""The preview video encoder against the real FFmpeg of the imageio-ffmpeg wheel; no farm."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, ImageStat

from exrkit import rgba, write_exr
from flamenco.commands.ffmpeg import EncodingFailed, encode_video, ordered_frames
from flamenco.core.compiler import preview_frame_path

# Frame numbers with gaps, each frame one solid colour, so the video's order can be checked.
COLOURS = {
    1: (220, 30, 30),
    2: (30, 200, 40),
    4: (30, 40, 220),
    7: (235, 235, 235),
    8: (20, 20, 20),
}
SIZE = (33, 21)  # odd on purpose: H.264 in yuv420p needs even sides


def _write_frames(job_dir: Path) -> dict[str, str]:
    """PNG frames laid out like a preview task's fetched files; the manifest in random order."""
    files = {}
    for frame, colour in COLOURS.items():
        relpath = preview_frame_path(frame, f"frame_{frame:06d}.png")
        path = job_dir / relpath
        path.parent.mkdir(parents=True)
        Image.new("RGB", SIZE, colour).save(path)
        files[relpath] = "0" * 64
    items = list(files.items())
    random.Random(7).shuffle(items)
    return dict(items)


def _mean_colours(video: Path) -> tuple[tuple[int, int], list[tuple[int, ...]]]:
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    width, height = meta["size"]
    means = []
    for raw in reader:
        image = Image.frombytes("RGB", (width, height), raw)
        inner = image.crop((4, 4, width - 4, height - 4))  # away from the padded edge
        means.append(tuple(round(v) for v in ImageStat.Stat(inner).mean))
    return (width, height), means


def test_frames_with_gaps_become_a_video_in_frame_order(tmp_path: Path) -> None:
    job_dir = tmp_path / "files"
    files = _write_frames(job_dir)
    frames = ordered_frames(files, job_dir)
    assert [frame for frame, _ in frames] == sorted(COLOURS)

    encoded: list[int] = []
    log: list[str] = []
    video = tmp_path / "out" / "preview.mp4"
    asyncio.run(encode_video([path for _, path in frames], video, 10, encoded.append, log.append))

    assert video.is_file()
    assert not list(video.parent.glob("*.partial")) and not list(video.parent.glob("sequence-*"))
    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert count == len(COLOURS)
    assert seconds == pytest.approx(len(COLOURS) / 10, abs=0.01)
    assert encoded and encoded[-1] == len(COLOURS)

    size, means = _mean_colours(video)
    assert size == (34, 22)  # rounded up to even sides
    assert len(means) == len(COLOURS)
    for mean, frame in zip(means, sorted(COLOURS), strict=True):
        expected = COLOURS[frame]
        assert all(abs(a - b) <= 12 for a, b in zip(mean, expected, strict=True)), (
            frame,
            mean,
            expected,
        )


def test_a_frame_that_is_not_an_image_fails_with_ffmpegs_reason(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    Image.new("RGB", SIZE, (1, 2, 3)).save(good)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not a png at all")
    video = tmp_path / "out" / "preview.mp4"
    with pytest.raises(EncodingFailed, match="FFmpeg encoded 2 of 3 frames"):
        asyncio.run(encode_video([good, bad, good], video, 24))
    assert not video.exists()
    assert not list(video.parent.iterdir())  # neither a partial video nor the sequence


def test_no_frames_at_all_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(EncodingFailed, match="no rendered frames"):
        asyncio.run(encode_video([], tmp_path / "preview.mp4", 24))


def test_files_that_are_not_frames_are_left_out() -> None:
    files = {
        "scene.blend": "0" * 64,
        "frames/x/frame.png": "0" * 64,
        "frames/3/frame_000003.png": "0" * 64,
        "other/3/frame_000003.png": "0" * 64,
    }
    assert [f for f, _ in ordered_frames(files, Path("/job"))] == [3]


def test_exr_frames_become_a_video_of_their_beauty(tmp_path: Path) -> None:
    """Multilayer EXR frames (which FFmpeg alone cannot read) show their Combined pass."""
    frames = [
        write_exr(
            tmp_path / f"frame_{frame:06d}.exr",
            {
                "ViewLayer.Depth.Z": np.full((SIZE[1], SIZE[0]), 9.0, np.float32),
                "ViewLayer.Combined": rgba(SIZE[1], SIZE[0], linear),
            },
        )
        for frame, linear in enumerate([(1.0, 0.0, 0.0), (0.0, 0.18, 0.0)], 1)
    ]
    video = tmp_path / "out" / "preview.mp4"
    asyncio.run(encode_video(frames, video, 24))

    _, means = _mean_colours(video)
    for mean, expected in zip(means, [(255, 0, 0), (0, 118, 0)], strict=True):
        assert all(abs(a - b) <= 16 for a, b in zip(mean, expected, strict=True)), (mean, expected)
    assert not list(video.parent.glob("sequence-*"))


def test_an_unreadable_exr_frame_fails_with_its_name(tmp_path: Path) -> None:
    good = write_exr(tmp_path / "a.exr", {"RGBA": rgba(SIZE[1], SIZE[0], (0.5, 0.5, 0.5))})
    bad = tmp_path / "b.exr"
    bad.write_bytes(good.read_bytes()[:40])  # cut short
    video = tmp_path / "out" / "preview.mp4"
    with pytest.raises(EncodingFailed, match=r"Frame file b\.exr could not be read"):
        asyncio.run(encode_video([good, bad], video, 24))
    assert not list(video.parent.iterdir())
