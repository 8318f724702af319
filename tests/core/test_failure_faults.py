"""Whose fault a failed task is, table-driven: the file's (fail the job) or the machine's."""

from __future__ import annotations

import pytest

from flamenco.core.faults import Fault, classify_failure, disk_full_sentence

F, M = Fault.FILE, Fault.MACHINE
V5, V34 = (5, 0, 1), (3, 4, 1)


@pytest.mark.parametrize(
    ("message", "file_version", "blender_version", "fault"),
    [
        # The file's own: every Worker would fail it the same way.
        ("Cannot render, no camera", (2, 79), V5, F),
        ("Cannot render, no camera", None, None, F),
        (
            "Could not read blend file /w/jobs/j/scene.blend: Loading failed: Missing DNA block",
            (2, 79),
            V5,
            F,
        ),
        ("Blend file /w/jobs/j/scene.blend has no scene to render.", (4, 2), V5, F),
        ("The file's own script rig.py raised ValueError: broken (while rendering)", None, V5, F),
        # The same sentences from a Blender older than the file: another Worker may read it.
        ("Could not read blend file /w/scene.blend: File format is not supported", (5, 0), V34, M),
        ("Cannot render, no camera", (5, 0), V34, M),
        # Same major and minor: the patch level is not in the file.
        ("Cannot render, no camera", (5, 0), (5, 0, 0), F),
        # More tiles than the scene's frame allows: every Worker's Blender reports that size.
        ("--tiles 5185 is more than the 96x54 frame's 5184 pixels.", (5, 0), V5, F),
        ("--tiles 97 cannot split the 96x54 frame into a grid; choose a count.", None, V5, F),
        ("Blender crashed:\n--tiles 5185 is more than the 96x54 frame's 5184 pixels.", None, V5, M),
        # A blank frame (--check-blank) is the scene's: it renders so on every Worker.
        ("Frame 3 (frame_0003.png) is blank: every pixel has the same value.", None, V5, F),
        # The machine's: retried elsewhere.
        ("Frame 3 (frame_0003.png) is truncated: the PNG has no IEND chunk.", None, V5, M),
        ("Frame 3 (frame_0003.png) is 960x540 pixels, but the job renders 1920x1080.", None, V5, M),
        ("Frame 3 (frame_0003.png) is empty (0 bytes).", None, V5, M),
        ("Blender crashed:\nFrame 3 (f.png) is blank: every pixel has the same value", None, V5, M),
        ("Blender (pid 42) was killed by SIGSEGV while rendering:\nCannot render", None, V5, M),
        ("Blender (pid 42) was killed by SIGKILL while rendering", (4, 2), V5, M),
        ("Found no Cycles device of type OPTIX.", (4, 2), V5, M),
        ("Could not configure Cycles device CUDA: no device", (4, 2), V5, M),
        ("CUDA error: Out of memory in cuMemAlloc", (4, 2), V5, M),
        ("Blender showed no sign of life for 600 s and was stopped.", None, V5, M),
        ("Could not start Blender (/opt/blender): [Errno 2] No such file", None, None, M),
        ("The Manager cannot be reached to fetch the blob; retry later.", None, None, M),
        ("This Worker cannot run tasks of type 'bake'.", None, None, M),
        ("", None, None, M),
        # A full disk is the machine's, even in the words of a file sentence.
        ("The Worker's disk is full: no space left on device.", None, V5, M),
        ("Could not read blend file /w/scene.blend: No space left on device", (4, 2), V5, M),
    ],
)
def test_classify_failure(
    message: str,
    file_version: tuple[int, ...] | None,
    blender_version: tuple[int, ...] | None,
    fault: Fault,
) -> None:
    assert classify_failure(message, file_version, blender_version) == fault


def test_a_full_disk_is_said_in_one_sentence_and_is_the_machines_fault() -> None:
    sentence = disk_full_sentence("/w/cache/tmp/incoming-1")
    assert sentence == (
        "The Worker's disk is full: no space left on device while writing "
        "/w/cache/tmp/incoming-1; another Worker will retry the task."
    )
    assert classify_failure(sentence, (4, 2), V5) == M
    assert "no space left on device;" in disk_full_sentence(None)
