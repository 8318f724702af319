"""Matching tasks to Workers, table-driven."""

from __future__ import annotations

import pytest

from flamenco.core.matching import (
    Capabilities,
    Requirements,
    choose_blender,
    job_waiting_reason,
    parse_version,
    unmet,
    waiting_reason,
)

CPU_ONLY = Capabilities.of([], ["5.0.1"], [])
NVIDIA = Capabilities.of(["gpu-room"], ["4.2.3"], ["CUDA", "OPTIX"])
OLD = Capabilities.of(["gpu-room"], ["3.4.1"], [])
SEVERAL = Capabilities.of([], ["4.2.23", "4.5.15", "3.6.0"], [])
WITH_COMMANDS = Capabilities.of([], ["5.0.1"], [], ["blender-render", "blender", "ffmpeg"])


@pytest.mark.parametrize(
    "req",
    [
        Requirements(),
        Requirements("gpu-room", "4.2", "OPTIX"),
        Requirements(command="blender-script"),
        Requirements("t", None, "GPU", "swatch"),
    ],
)
def test_requirements_survive_their_stored_form(req: Requirements) -> None:
    assert Requirements.from_dict(req.to_dict()) == req
    assert ("command" in req.to_dict()) == (req.command is not None)  # older rows have none


def test_a_job_whose_command_no_worker_has_says_so() -> None:
    reason = waiting_reason(Requirements(command="swatch"), [WITH_COMMANDS])
    assert reason == (
        "Waiting: the job needs a Worker with the command 'swatch', and no Worker online has that."
    )


@pytest.mark.parametrize(
    ("req", "cap", "reason"),
    [
        (Requirements(), CPU_ONLY, None),
        (Requirements(tag="gpu-room"), NVIDIA, None),
        (Requirements(tag="gpu-room"), CPU_ONLY, "needs a Worker with the tag 'gpu-room'"),
        (Requirements(min_blender="4.2"), NVIDIA, None),
        (Requirements(min_blender="4.2"), OLD, "needs Blender 4.2 or newer"),
        (
            Requirements(min_blender="5.0"),
            Capabilities.of([], [""], []),
            "needs Blender 5.0 or newer",
        ),
        (Requirements(min_blender="4.5"), SEVERAL, None),  # any one of its Blenders will do
        (Requirements(min_blender="5.0"), SEVERAL, "needs Blender 5.0 or newer"),
        (Requirements(device="GPU"), NVIDIA, None),
        (Requirements(device="GPU"), CPU_ONLY, "needs a Worker with a GPU"),
        (Requirements(device="OPTIX"), NVIDIA, None),
        (Requirements(device="HIP"), NVIDIA, "needs a Worker with a HIP GPU"),
        (Requirements(device="CPU"), NVIDIA, None),
        # The command a task's type names: a Worker that says which it has must have it; one
        # that does not say (older than commands) is taken to have them all.
        (Requirements(command="blender-render"), WITH_COMMANDS, None),
        (Requirements(command="swatch"), WITH_COMMANDS, "needs a Worker with the command 'swatch'"),
        (Requirements(command="swatch"), CPU_ONLY, None),
        (Requirements(), WITH_COMMANDS, None),
        (
            Requirements(tag="gpu-room", command="swatch"),
            WITH_COMMANDS,
            "needs a Worker with the command 'swatch'",
        ),
    ],
)
def test_unmet(req: Requirements, cap: Capabilities, reason: str | None) -> None:
    assert unmet(req, cap) == reason


@pytest.mark.parametrize(
    ("text", "version"),
    [("4.2", (4, 2, 0)), ("5.0.1", (5, 0, 1)), ("5", (5, 0, 0)), (" 3.4.1 ", (3, 4, 1))],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["", "v5", "5.0.1.2", "5.x", "five"])
def test_parse_version_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Blender version"):
        parse_version(text)


def test_waiting_reason_names_what_is_missing() -> None:
    req = Requirements(device="CUDA")
    assert waiting_reason(req, [CPU_ONLY, NVIDIA]) is None
    assert waiting_reason(req, [CPU_ONLY]) == (
        "Waiting: the job needs a Worker with a CUDA GPU, and no Worker online has that."
    )
    assert waiting_reason(req, []) == "Waiting for a Worker to come online."


def test_waiting_reason_names_the_blender_versions_online() -> None:
    assert waiting_reason(Requirements(min_blender="5.0"), [SEVERAL, NVIDIA]) == (
        "Waiting: the job needs Blender 5.0 or newer, "
        "and the Workers online have Blender 3.6.0, 4.2.3, 4.2.23, 4.5.15."
    )


@pytest.mark.parametrize(
    ("file_version", "installed", "chosen"),
    [
        ("4.2", ["5.0.1", "4.2.23", "4.5.15"], "4.2.23"),  # the same version as the file's
        ("4.3", ["5.0.1", "4.2.23", "4.5.15"], "4.5.15"),  # else the closest newer one
        ("5.0", ["4.2.23", "5.0.1", "4.5.15"], "5.0.1"),
        ("2.79", ["4.5.15", "4.2.23"], "4.2.23"),
        ("5.1", ["4.5.15", "5.0.1"], "5.0.1"),  # none can be trusted: the newest tries
        (None, ["4.5.15", "5.0.1", "4.2.23"], "5.0.1"),  # unknown file: the newest
        ("4.2", ["4.2.0"], "4.2.0"),
        ("4.2", [], None),
    ],
)
def test_choose_blender(file_version: str | None, installed: list[str], chosen: str | None) -> None:
    assert choose_blender(file_version, installed) == chosen


def test_requirements_round_trip() -> None:
    req = Requirements(tag="t", min_blender="4.2", device="OPTIX")
    assert Requirements.from_dict(req.to_dict()) == req
    assert Requirements.from_dict(None) == Requirements()


@pytest.mark.parametrize(
    ("req", "workers", "blocked", "reason"),
    [
        (Requirements(), {"a": CPU_ONLY}, set(), None),
        (Requirements(), {"a": CPU_ONLY, "b": NVIDIA}, {"a"}, None),
        (Requirements(), {}, set(), "Waiting for a Worker to come online."),
        (
            Requirements(),
            {"b": NVIDIA, "a": CPU_ONLY},
            {"a", "b"},
            "Waiting: every Worker that could run it failed it too often (a, b); "
            "fix them, then unblock or requeue the job, or add Workers.",
        ),
        (  # only the Workers that qualify are named
            Requirements(tag="gpu-room"),
            {"a": CPU_ONLY, "n": NVIDIA},
            {"n"},
            "Waiting: every Worker that could run it failed it too often (n); "
            "fix them, then unblock or requeue the job, or add Workers.",
        ),
        (  # nobody qualifies: the requirement is the reason, blocked or not
            Requirements(min_blender="99.0"),
            {"a": CPU_ONLY},
            {"a"},
            "Waiting: the job needs Blender 99.0 or newer, "
            "and the Workers online have Blender 5.0.1.",
        ),
    ],
)
def test_job_waiting_reason_names_the_blocked_workers(
    req: Requirements, workers: dict[str, Capabilities], blocked: set[str], reason: str | None
) -> None:
    assert job_waiting_reason(req, workers, blocked) == reason
