"""Every model on the wire refuses NaN and infinity, wherever a number can go."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import pytest
from pydantic import BaseModel, RootModel, ValidationError

from flamenco import wire

MODELS = sorted(
    (
        model
        for _, model in inspect.getmembers(wire, inspect.isclass)
        # wire.py's own and those it re-exports from wire_farm.py and wire_types.py
        if issubclass(model, BaseModel) and model.__module__.startswith(wire.__name__)
    ),
    key=lambda model: model.__name__,
)


def test_the_models_are_found() -> None:
    assert {wire.WorkerSync, wire.ManagerSync, wire.JobSubmission} <= set(MODELS)


@pytest.mark.parametrize("model", MODELS, ids=[model.__name__ for model in MODELS])
def test_every_wire_model_refuses_nan_and_infinity(model: type[BaseModel]) -> None:
    if issubclass(model, RootModel):
        (item,) = model.model_fields["root"].annotation.__args__  # type: ignore[union-attr]
        assert item.model_config.get("allow_inf_nan") is False, item
    else:
        assert model.model_config.get("allow_inf_nan") is False


@pytest.mark.parametrize(
    ("model", "body", "where"),
    [
        (wire.WorkerSync, '{"stats": {"cpu_percent": NaN}}', ("stats", "cpu_percent")),
        (
            wire.WorkerSync,
            '{"progress": {"task_id": "t", "progress": NaN}}',
            ("progress", "progress"),
        ),
        (wire.ManagerSync, '{"wait_s": Infinity}', ("wait_s",)),
        (
            wire.JobSubmission,
            '{"name": "j", "files": {}, "settings": {"deep": [{"x": -Infinity}]}}',
            ("settings",),
        ),
        (wire.Lease, '{"command": {"fps": NaN}}', ("command",)),
    ],
)
def test_a_number_that_is_not_finite_is_refused_where_it_is(
    model: type[BaseModel], body: str, where: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate_json(body)
    problems = {(e["loc"], e["msg"]) for e in refused.value.errors()}
    assert (where, "Input should be a finite number") in problems


def test_a_manager_sync_keeps_its_good_worker_rows_and_names_the_bad_ones() -> None:
    sync = wire.ManagerSync.model_validate_json(
        '{"workers": [{"name": "a", "status": "awake", "cpu_percent": NaN},'
        ' {"name": "b", "status": "awake", "progress": null}, {"name": "c", "status": "awake"}]}'
    )
    assert [w.name for w in sync.workers or []] == ["c"]
    assert sync.dropped_workers == [
        "Worker 'a': cpu_percent: Input should be a finite number",
        "Worker 'b': progress: Input should be a valid number",
    ]
    assert wire.ManagerSync(workers=[wire.WorkerSummary(name="d", status="awake")]).workers


@pytest.mark.parametrize(
    "command",
    [
        {"deep": [{"x": float("nan")}]},
        {"x": [1, "a", None, True, [float("inf")]]},
        {"ordered": OrderedDict(x=float("-inf"))},  # a dict's subclass is looked inside too
    ],
    ids=["nan-deep", "inf-after-plain-values", "inf-in-dict-subclass"],
)
def test_a_json_object_given_as_python_values_refuses_what_is_not_finite(
    command: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError) as refused:
        wire.Assignment.model_validate(
            {"task_id": "t", "job_id": "j", "job_name": "n", "name": "n", "type": "x"}
            | {"frames": [1], "files": {}, "command": command}
        )
    assert [(e["loc"], e["msg"]) for e in refused.value.errors()] == [
        (("command",), "Input should be a finite number")
    ]


LEASE = {
    "task_id": "t1",
    "job_id": "j1",
    "job_name": "shot 010",
    "job_priority": 50,
    "type": "blender-render",
    "name": "render 1-2",
    "frames": [1, 2],
    "command": {"blend": "s.blend", "frames": [1, 2]},
    "files": {"s.blend": "ab" * 32},
    "lease_expires": "2026-12-05T12:00:00Z",
    "requirements": {"device": "GPU"},
    "failed_by": ["w2"],
}


@pytest.mark.parametrize("given", [LEASE, {k: v for k, v in LEASE.items() if k != "failed_by"}])
def test_a_trusted_model_is_the_validated_one(given: dict[str, Any]) -> None:
    """`of_trusted` (every field given, or model_construct's defaults for those left out)
    makes what validation makes of values already validated: equal, and the same JSON."""
    validated = wire.Lease.model_validate(given)
    trusted = wire.Lease.of_trusted(dict(validated.model_dump(exclude_unset=True)))
    assert trusted == validated
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert trusted.model_fields_set == validated.model_fields_set
