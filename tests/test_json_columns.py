"""The text the Server's JSON columns store (`db.json_text`): orjson's where it can, the
standard library's for what orjson refuses; either way it reads back as json.dumps' text
would, including a client's odd values (a lone surrogate, an integer past 64 bits)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flamenco.db import json_text

VALUES: list[Any] = [
    {"blend": "s.blend", "frames": [1, 2], "persistent_data": False, "é": "ü"},
    {"nested": {"a": [1.5, None, True, -0.0, 1e300]}},
    (1, 2, 3),  # a TaskSpec's frames
    {"lone surrogate": "\udb50x"},
    {"past 64 bits": 2**70, "past 64 bits, negative": -(2**70)},
    {1: "an integer key", "2": "a string key"},
    [],
    "",
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:40] for v in VALUES])
def test_the_stored_text_reads_back_as_the_standard_librarys(value: Any) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))
