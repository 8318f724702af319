"""Table-driven tests for flamenco.core.names: what a name or relative path may be."""

from __future__ import annotations

import pytest

from flamenco.core.names import (
    MAX_COMPONENT_BYTES,
    MAX_LABEL_BYTES,
    UnsafePath,
    check_artifact_name,
    check_file_name,
    check_frame_file_name,
    check_label,
    check_relative_path,
)

LONG_PART = "a" * 300
# 128 characters of two bytes each: short in characters, 256 bytes in UTF-8.
WIDE_PART = "é" * 128


@pytest.mark.parametrize(
    "path",
    [
        "scene.blend",
        "textures/wood.png",
        "_outside_project/home/ann/lib.blend",
        "a b/c-d_e.f",
        "ünïcödé/名前.png",
        "x" * MAX_COMPONENT_BYTES,
        "é" * 127,  # 254 bytes
        "frames/12/frame_000012.png",
    ],
)
def test_relative_paths_that_are_accepted(path: str) -> None:
    assert str(check_relative_path(path)) == path


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "is not a valid relative path"),
        ("sub\\evil.blend", "is not a valid relative path"),
        ("a\0b", "is not a valid relative path"),
        ("evil\nname.blend", "contains a control character"),
        ("tab\there.blend", "contains a control character"),
        ("bell\x07.blend", "contains a control character"),
        ("../evil.blend", "tries to leave its folder"),
        ("sub/../../evil.blend", "tries to leave its folder"),
        ("/etc/x.blend", "tries to leave its folder"),
        ("C:evil.blend", "tries to leave its folder"),
        ("a//b.blend", "has an empty or '.' part"),
        ("./a.blend", "has an empty or '.' part"),
        ("a/./b.blend", "has an empty or '.' part"),
        ("folder/", "has an empty or '.' part"),
        (".", "has an empty or '.' part"),
        (f"{LONG_PART}/x.blend", "has a part longer than 255 bytes (300 in UTF-8)"),
        (f"sub/{WIDE_PART}", "has a part longer than 255 bytes (256 in UTF-8)"),
        ("/".join(["d" * 200] * 16), "is longer than 3072 bytes"),
    ],
)
def test_relative_paths_that_are_refused(path: str, why: str) -> None:
    with pytest.raises(UnsafePath) as refused:
        check_relative_path(path)
    message = str(refused.value)
    assert why in message
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize(
    "name", ["preview.mp4", "frame_000001.png", "a.b.c", "x" * 255, "naïve.exr"]
)
def test_file_names_that_are_accepted(name: str) -> None:
    assert check_file_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("..", "is not a plain file name"),
        ("./", "is not a plain file name"),
        ("../evil.mp4", "tries to leave its folder"),
        ("sub/preview.mp4", "must not contain a folder"),
        (".hidden.mp4", "is not a plain file name"),
        ("trailing.", "is not a plain file name"),
        ("trailing ", "is not a plain file name"),
        ("what?.png", "is not a plain file name"),
        ('quote".png', "is not a plain file name"),
        ("pipe|.png", "is not a plain file name"),
        ("evil\nname.png", "contains a control character"),
        ("x" * 256, "has a part longer than 255 bytes"),
    ],
)
def test_file_names_that_are_refused(name: str, why: str) -> None:
    with pytest.raises(UnsafePath, match=why):
        check_file_name(name)


def test_a_file_name_may_have_a_tighter_limit() -> None:
    assert check_file_name("x" * 200, limit=200)
    with pytest.raises(UnsafePath, match="longer than 200 bytes"):
        check_file_name("x" * 201, limit=200)


def test_an_artifact_name_is_at_most_200_bytes() -> None:
    assert check_artifact_name("preview.mp4") == "preview.mp4"
    assert check_artifact_name("x" * 196 + ".mp4")
    with pytest.raises(UnsafePath, match=r"The artifact name 'xxx.* is longer than 200 bytes"):
        check_artifact_name("x" * 197 + ".mp4")


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        ("cache/fluid_0001.vdb", None),
        ("bake/a/b/c.abc", None),
        ("../preview.mp4", "tries to leave its folder"),
        ("/abs/preview.mp4", "tries to leave its folder"),
        ("cache//x.vdb", "has an empty or '.' part"),
        ("cache/.hidden", "is not a plain file name"),
        ("ca:che/x.vdb", "tries to leave its folder"),
        ("cache/x?.vdb", "is not a plain file name"),
        ("c/" * 100 + "xy", "is longer than 200 bytes"),
    ],
)
def test_an_artifact_name_is_a_path_in_the_jobs_folder(name: str, refusal: str | None) -> None:
    if refusal is None:
        assert check_artifact_name(name) == name
    else:
        with pytest.raises(UnsafePath, match=refusal):
            check_artifact_name(name)


@pytest.mark.parametrize(
    "name",
    ["frame_000001.png", "0001.PNG", "f.jpg", "f.jpeg", "f.exr", "f.tif", "f.webp", "p.mp4"],
)
def test_frame_file_names_that_are_accepted(name: str) -> None:
    assert check_frame_file_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("evil\nname.png", "contains a control character"),
        (".hidden.png", "is not a plain file name"),
        ("x.html", "does not end in an image or movie extension"),
        ("x.png.sh", "does not end in an image or movie extension"),
        ("png", "does not end in an image or movie extension"),
        ("sub/x.png", "must not contain a folder"),
    ],
)
def test_frame_file_names_that_are_refused(name: str, why: str) -> None:
    with pytest.raises(UnsafePath, match=why):
        check_frame_file_name(name)


@pytest.mark.parametrize("label", ["My job", "shot 010 / take 2", "é" * 100, "x" * MAX_LABEL_BYTES])
def test_labels_that_are_accepted(label: str) -> None:
    assert check_label(label, "job name") == label


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("", "The job name is empty."),
        ("   ", "The job name is empty."),
        ("two\nlines", "The job name 'two\\nlines' contains a control character."),
        ("x" * 201, "is longer than 200 bytes (201 in UTF-8)."),
        ("é" * 101, "is longer than 200 bytes (202 in UTF-8)."),
    ],
)
def test_labels_that_are_refused(label: str, why: str) -> None:
    with pytest.raises(UnsafePath) as refused:
        check_label(label, "job name")
    assert why in str(refused.value)
