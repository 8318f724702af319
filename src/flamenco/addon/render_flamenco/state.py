"""What the add-on remembers while Blender runs (never saved; no bpy here)."""

from __future__ import annotations

from typing import Any

from .submission import Outcome, Submission

# The submission in progress, if any; one at a time.
active: Submission | None = None
# What the last successful submission did (files uploaded, how they were found).
last_outcome: Outcome | None = None
# The Managers (sites) the last connection check or job refresh found, for the site field.
managers: list[dict[str, Any]] = []
# The Server's job types (GET /api/v1/job-types), from the last refresh or connection check.
job_types: list[dict[str, Any]] = []
# The last connection check's result, shown in the preferences.
connection: str = ""
# False: find dependencies with bpy.utils.blend_paths even when BAT is available (testing).
use_bat: bool = True
