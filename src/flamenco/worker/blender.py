"""Blender on this machine: finding every Blender a Worker offers, how to run a script in
each, and the event lines our scripts print inside it.

A script of ours running inside Blender (``blender_child.py``, ``cycles_probe.py``) writes
``@@FLAMENCO@@ {json}`` event lines mixed into Blender's own stdout; `parse_line` tells them
apart. The warm process that renders a job's frames is ``warm_blender.py``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flamenco.core.matching import parse_version
from flamenco.worker.blender_versions import FORGETFUL, VersionMemory, install_key

log = logging.getLogger(__name__)

MARKER = "@@FLAMENCO@@"
VERSION_TIMEOUT = 60.0

Event = dict[str, Any]

_VERSION_RE = re.compile(r"Blender (\d+\.\d+(?:\.\d+)?)")
_PLAIN_VERSION_RE = re.compile(r"^\d+\.\d+(?:\.\d+)?\b")


class BlenderNotFound(RuntimeError):
    """No usable Blender (executable or bpy module) was found."""


@dataclass(frozen=True)
class BlenderInstall:
    """How to run a script inside Blender: ``[*argv_prefix, script, *sep, *args]``."""

    argv_prefix: tuple[str, ...]
    kind: Literal["executable", "bpy"]
    version: str

    def script_argv(self, script: Path, args: Sequence[str]) -> list[str]:
        # Blender itself stops parsing its own options at "--"; plain Python needs no marker.
        separator = ["--"] if self.kind == "executable" else []
        return [*self.argv_prefix, str(script), *separator, *args]

    @property
    def where(self) -> str:
        """The Blender executable, or the Python whose bpy module it is."""
        return self.argv_prefix[0]


# --- finding Blender -----------------------------------------------------------------------

_NOT_FOUND_HINT = (
    "Install the bpy wheel into this environment with `pip install -e '.[blender]'` "
    "(needs Python 3.11) or pass `--blender PATH` to a Blender executable or a Python with bpy."
)


def find_blender(configured: str | None = None) -> BlenderInstall:
    """The newest Blender this Worker would offer (see find_blenders)."""
    return find_blenders([configured] if configured else [])[-1]


def find_blenders(configured: Sequence[str] = (), remembered: bool = True) -> list[BlenderInstall]:
    """Every Blender a Worker offers, oldest first, one per version.

    Configured paths (Blender executables or Pythons with bpy) are all used and each must
    work; without any, every `blender` on PATH and the bpy module of this Python. With
    `remembered`, an install unchanged on disk since it last said its version is not started
    to ask again (blender_versions.py); without, every one is.
    """
    memory = VersionMemory() if remembered else FORGETFUL
    if configured:
        installs = [install_at(p, memory) for p in configured]
    else:
        installs = _found_on_this_machine(memory)
    if not installs:
        raise BlenderNotFound(
            f"No Blender found: no `blender` on PATH and no bpy module. {_NOT_FOUND_HINT}"
        )
    by_version: dict[str, BlenderInstall] = {}
    for install in installs:
        by_version.setdefault(install.version, install)  # the first given wins a tie
    return sorted(by_version.values(), key=lambda i: parse_version(i.version))


def _found_on_this_machine(memory: VersionMemory) -> list[BlenderInstall]:
    installs, seen = [], set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which("blender", path=folder) if folder else None
        if path is None or os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        try:
            installs.append(executable_install(path, memory=memory))
        except BlenderNotFound as exc:  # one broken copy must not hide the others
            log.warning("not using %s: %s", path, exc)
    if importlib.util.find_spec("bpy") is not None:
        installs.append(bpy_install(memory=memory))
    return installs


def install_at(configured: str, memory: VersionMemory = FORGETFUL) -> BlenderInstall:
    """A configured Blender: a Blender executable, or a Python interpreter with bpy."""
    # Absolute: Blender children run with other working folders.
    path = os.path.abspath(shutil.which(configured) or configured)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BlenderNotFound(
            f"--blender {configured!r} is not an executable file; give a Blender executable "
            "or a Python 3.11 interpreter that has the bpy module."
        )
    if (version := memory.recall(install_key(path))) is not None:
        return _executable(path, version)  # only executables are remembered by their file
    output = _probe([path, "--version"], path)
    if output.startswith("Python "):
        return bpy_install(path, memory)
    if _VERSION_RE.search(output):
        return executable_install(path, output, memory)
    raise BlenderNotFound(
        f"--blender {configured!r} is neither Blender nor Python (its --version said "
        f"{output.strip()[:80]!r})."
    )


def executable_install(
    path: str, version_output: str | None = None, memory: VersionMemory = FORGETFUL
) -> BlenderInstall:
    key = install_key(path) if memory.enabled else None
    version = memory.recall(key) if version_output is None else None
    if version is None:
        output = version_output or _probe([path, "--version"], path)
        match = _VERSION_RE.search(output)
        if not match:
            raise BlenderNotFound(f"{path} does not look like Blender: {output.strip()[-500:]}")
        version = match[1]
        memory.remember(key, version)
    return _executable(path, version)


def _executable(path: str, version: str) -> BlenderInstall:
    # --python-exit-code makes an uncaught exception in our script end Blender non-zero
    # instead of Blender carrying on (and exiting 0) after printing the traceback.
    prefix = (path, "-b", "--factory-startup", "-y", "--python-exit-code", "1", "--python")
    return BlenderInstall(argv_prefix=prefix, kind="executable", version=version)


def bpy_install(python: str = sys.executable, memory: VersionMemory = FORGETFUL) -> BlenderInstall:
    """The bpy module of a Python interpreter (this one unless named). That of this Python is
    remembered by its binary, found without importing it; another Python's is asked."""
    key = None
    if memory.enabled and python == sys.executable:
        spec = importlib.util.find_spec("bpy")
        key = install_key(spec.origin) if spec is not None and spec.origin else None
    if (version := memory.recall(key)) is not None:
        return _bpy(python, version)
    code = "import bpy; print(bpy.app.version_string)"
    # Probe in a throwaway user folder: importing bpy would otherwise write to ~/.config.
    with tempfile.TemporaryDirectory(prefix="flamenco-bpy-probe-") as tmp:
        try:
            output = _probe([python, "-c", code], "the bpy module", child_env(Path(tmp)))
        except BlenderNotFound:
            if python == sys.executable:
                raise
            raise BlenderNotFound(
                f"--blender {python!r} is a Python that cannot import the bpy module; "
                "install bpy into it (pip install bpy, Python 3.11) or give a Blender executable."
            ) from None
    versions = [ln for ln in output.splitlines() if _PLAIN_VERSION_RE.match(ln.strip())]
    if not versions:
        raise BlenderNotFound(f"Could not read the bpy version: {output.strip()[-500:]}")
    version = _PLAIN_VERSION_RE.match(versions[-1].strip())[0]  # type: ignore[index]
    memory.remember(key, version)
    return _bpy(python, version)


def _bpy(python: str, version: str) -> BlenderInstall:
    # -P: never put the child script's folder first on sys.path, where a sibling module
    # could shadow a standard-library module that bpy imports.
    return BlenderInstall(argv_prefix=(python, "-P"), kind="bpy", version=version)


def _probe(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BlenderNotFound(f"Could not run {what}: {exc}. {_NOT_FOUND_HINT}") from exc
    if done.returncode != 0:
        raise BlenderNotFound(
            f"{what} failed with exit code {done.returncode}: {done.stdout.strip()[-500:]}"
        )
    return done.stdout


def child_env(user_resources: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Blender child, with its user folder redirected.

    Without BLENDER_USER_RESOURCES, bpy writes caches and preferences into ~/.config,
    which may be read-only, shared between workers, or hold a user's personal add-ons.
    """
    user_resources.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(user_resources)
    if extra:
        env.update(extra)
    return env


def default_user_resources() -> Path:
    """One folder per parent process, i.e. per Worker, when the Worker does not choose."""
    return Path(tempfile.gettempdir()) / "flamenco-blender" / str(os.getpid())


# --- reading the child's output ------------------------------------------------------------


def parse_line(raw: bytes) -> tuple[str | None, Event | None]:
    """Split one output line into (plain Blender text, event). Either part may be None.

    The marker is searched anywhere in the line because Blender's C code can leave a
    half-written line on stdout right before our event.
    """
    text = raw.decode("utf-8", errors="replace").rstrip()
    head, found, tail = text.partition(MARKER)
    plain = head.rstrip() or None
    if not found:
        return plain, None
    try:
        event = json.loads(tail)
    except json.JSONDecodeError:
        return text, None  # not really ours: keep it as a log line
    return plain, event if isinstance(event, dict) else None
