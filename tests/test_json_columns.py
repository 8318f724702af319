"""The text the Server's JSON columns store (`db.json_text`): orjson's where it can, the
standard library's for what orjson refuses; either way it reads back as json.dumps' text
would, including a client's odd values (a lone surrogate, an integer past 64 bits). The
reader (`db.json_value`, orjson's where it reads the same) gives what json.loads gives, for
these texts and for those the standard library wrote before, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, Table, insert, select

from flamenco.db import json_text, json_value, make_engine
from pgkit import postgres_database

VALUES: list[Any] = [
    {"blend": "s.blend", "frames": [1, 2], "persistent_data": False, "é": "ü"},
    {"nested": {"a": [1.5, None, True, -0.0, 1e300]}},
    (1, 2, 3),  # a TaskSpec's frames
    {"lone surrogate": "\udb50x"},
    {"past 64 bits": 2**70, "past 64 bits, negative": -(2**70)},
    {1: "an integer key", "2": "a string key"},
    [],
    "",
    {"long numbers": [18446744073709551615, 18446744073709551616, -9223372036854775809]},
    {"long float": 0.12345678901234567890123, "hex": "0123456789012345678901234abc"},
]
# Texts no column holds (the wire refuses NaN and infinity) that the reader still reads as
# json.loads does.
ODD_TEXTS = ["[NaN, Infinity, -Infinity]", "[1e400]", '{"a": 1, "a": 2}', " [1] "]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:40] for v in VALUES])
def test_the_stored_text_reads_back_as_the_standard_librarys(value: Any) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:40] for v in VALUES])
def test_the_reader_gives_what_the_standard_library_reads(value: Any) -> None:
    for text in (json_text(value), json.dumps(value), *ODD_TEXTS):  # now, before, odd
        for given in (text, text.encode()):  # SQLite's driver hands text, psycopg bytes
            assert repr(json_value(given)) == repr(json.loads(text)), text


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_json_column_reads_back_each_value_as_the_standard_library(
    database: str, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / 'json.sqlite'}"
        else:
            url = stack.enter_context(postgres_database())
        engine = make_engine(url)
        stack.callback(engine.dispose)
        table = Table(
            "values", MetaData(), Column("id", Integer, primary_key=True), Column("v", JSON)
        )
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), [{"id": i, "v": v} for i, v in enumerate(VALUES)])
        with engine.connect() as conn:
            read = dict(conn.execute(select(table.c.id, table.c.v)).all())
    for i, value in enumerate(VALUES):
        assert repr(read[i]) == repr(json.loads(json.dumps(value))), value
