"""The checked values that wire.py's models are made of: names, paths, free-form JSON.

Each wraps a check of `flamenco.core.names` (or a finiteness check) as a pydantic validator,
so a bad value is refused where it arrives, with the check's own sentence as its 422 reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic_core import PydanticCustomError

from flamenco.core.names import UnsafePath, check_label, check_relative_path


def _checked(check: Callable[[str], object]) -> AfterValidator:
    """A core.names check as a validator whose error message is the check's own sentence."""

    def validate(value: str) -> str:
        try:
            check(value)
        except UnsafePath as exc:
            raise PydanticCustomError("unsafe_name", str(exc)) from None
        return value

    return AfterValidator(validate)


# Values with nothing inside to check: skipped without a call (a lease's command holds
# mostly these, and a sync reply brings hundreds of leases).
_LEAVES = frozenset({str, int, bool, type(None)})


def _finite(value: Any) -> Any:
    """`value`, if no number anywhere inside it is NaN or infinite (JSON has neither)."""
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        if isinstance(value, float) and not math.isfinite(value):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        return value
    for item in items:
        if type(item) not in _LEAVES:
            _finite(item)
    return value


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# Job, Worker, Manager and user names: they become labels, log lines and parts of folder names.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    _checked(lambda name: check_label(name, "name")),
]
# A path inside a job's folder, as it arrives from a client: see core.names.
RelativePath = Annotated[str, _checked(check_relative_path)]
# Free-form JSON (settings, commands): whatever it holds, its numbers are finite.
JsonObject = Annotated[dict[str, Any], AfterValidator(_finite)]


class Wire(BaseModel):
    """The base of every model here: NaN and infinity are refused wherever a number goes, so
    that a value one component accepts never makes another refuse what carries it."""

    model_config = ConfigDict(allow_inf_nan=False)

    @classmethod
    def of_trusted(cls, values: dict[str, Any]) -> Self:
        """The model of values that were validated before (every field given), without
        validating them again: what `model_construct` makes, at a fifth of its cost (no
        defaults or aliases to work out), for the messages a busy farm builds thousands of
        times a second from rows and leases it checked on arrival."""
        if len(values) != len(cls.model_fields):
            return cls.model_construct(**values)
        model = cls.__new__(cls)
        object.__setattr__(model, "__dict__", values)
        object.__setattr__(model, "__pydantic_fields_set__", set(values))
        object.__setattr__(model, "__pydantic_extra__", None)
        object.__setattr__(model, "__pydantic_private__", None)
        return model


class Strict(Wire):
    model_config = ConfigDict(extra="forbid")
