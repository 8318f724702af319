"""Which Worker may run which task: tags, Blender version, render device and the command the
task's type names (flamenco.commands).

Pure: a task's Requirements against a Worker's Capabilities gives either None (it may) or
the reason it may not, in one sentence, which is also what a waiting job shows its user.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
RENDER_DEVICES = ("CPU", "GPU", *GPU_BACKENDS)
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")


def parse_version(text: str) -> tuple[int, ...]:
    """'4.2' -> (4, 2, 0); raises ValueError for anything that is not a version."""
    text = text.strip()
    if not _VERSION.match(text):
        raise ValueError(f"'{text}' is not a Blender version such as 4.2 or 5.0.1.")
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


@dataclass(frozen=True)
class Requirements:
    tag: str | None = None
    min_blender: str | None = None
    device: str = "CPU"  # CPU, GPU (any GPU) or one GPU backend
    command: str | None = None  # the Worker command that runs the task (its type)

    def to_dict(self) -> dict[str, Any]:
        needs = {"tag": self.tag, "min_blender": self.min_blender, "device": self.device}
        return needs | ({"command": self.command} if self.command else {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Requirements":
        data = data or {}
        return cls(
            data.get("tag"),
            data.get("min_blender"),
            data.get("device") or "CPU",
            data.get("command"),
        )


@dataclass(frozen=True)
class Capabilities:
    tags: frozenset[str] = frozenset()
    blender_versions: frozenset[str] = frozenset()  # every Blender the Worker can render with
    gpu_backends: frozenset[str] = frozenset()
    # The commands it has; None from a Worker that does not say (older than commands), which
    # is taken to run any task, as before.
    commands: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        tags: Iterable[str],
        blender_versions: Iterable[str],
        backends: Iterable[str],
        commands: Iterable[str] | None = None,
    ) -> "Capabilities":
        versions = frozenset(v for v in blender_versions if v)
        known = None if commands is None else frozenset(commands)
        return cls(frozenset(tags), versions, frozenset(b.upper() for b in backends), known)


def unmet(req: Requirements, cap: Capabilities) -> str | None:
    """Why a Worker with `cap` cannot run a task needing `req`, or None when it can."""
    if req.command and cap.commands is not None and req.command not in cap.commands:
        return f"needs a Worker with the command '{req.command}'"
    if req.tag and req.tag not in cap.tags:
        return f"needs a Worker with the tag '{req.tag}'"
    if req.min_blender and not any(_new_enough(v, req.min_blender) for v in cap.blender_versions):
        return f"needs Blender {req.min_blender} or newer"
    if req.device == "GPU" and not cap.gpu_backends:
        return "needs a Worker with a GPU"
    if req.device in GPU_BACKENDS and req.device not in cap.gpu_backends:
        return f"needs a Worker with a {req.device} GPU"
    return None


def _new_enough(have: str, need: str) -> bool:
    try:
        return parse_version(have) >= parse_version(need)
    except ValueError:
        return False  # a Worker that cannot say its version cannot promise one


def waiting_reason(req: Requirements, workers: Iterable[Capabilities]) -> str | None:
    """None when some Worker qualifies, else why the job waits (about the first misfit)."""
    workers = list(workers)
    reasons = [unmet(req, cap) for cap in workers]
    if any(reason is None for reason in reasons):
        return None
    if not reasons:
        return "Waiting for a Worker to come online."
    if reasons[0] == f"needs Blender {req.min_blender} or newer":
        # Name what there is, so the user sees whether to upgrade a Worker or re-save the file.
        online = sorted({v for cap in workers for v in cap.blender_versions}, key=_version_key)
        have = ", ".join(online) or "no known version"
        return f"Waiting: the job {reasons[0]}, and the Workers online have Blender {have}."
    return f"Waiting: the job {reasons[0]}, and no Worker online has that."


def _version_key(text: str) -> tuple[int, ...]:
    try:
        return parse_version(text)
    except ValueError:
        return ()


def choose_blender(file_version: str | None, installed: Iterable[str]) -> str | None:
    """Which of a Worker's Blender versions renders a file saved by `file_version` ('4.2'):
    the oldest that is not older than the file (closest to what the artist used, so the
    same look), compared by major.minor; the newest when none is or the file's version is
    unknown; None when there is none at all."""
    ordered = sorted(installed, key=_version_key)
    if not ordered:
        return None
    if file_version:
        wanted = _version_key(file_version)[:2]
        for version in ordered:
            if _version_key(version)[:2] >= wanted:
                return version
    return ordered[-1]


def job_waiting_reason(
    req: Requirements, workers: Mapping[str, Capabilities], blocked: Iterable[str]
) -> str | None:
    """None when an online Worker (by name) that is not kept off the job qualifies, else why
    the job waits, naming the Workers that could run it but failed it too often."""
    blocked = set(blocked)
    if waiting_reason(req, [c for n, c in workers.items() if n not in blocked]) is None:
        return None
    able = sorted(name for name, cap in workers.items() if unmet(req, cap) is None)
    if able:
        return (
            f"Waiting: every Worker that could run it failed it too often ({', '.join(able)}); "
            "fix them, then unblock or requeue the job, or add Workers."
        )
    return waiting_reason(req, workers.values())
