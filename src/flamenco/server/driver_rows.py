"""A statement compiled once for a dialect, given many rows through the driver's executemany.

SQLAlchemy's executemany builds and processes every row's parameters in Python (about 2 µs
a row): for the Server's busiest writes, a batch of task updates and their records, as much
as the database's own work. Here the rows go to the driver as it takes them: tuples in
placeholder order (sqlite3's "?") or dictionaries (psycopg's named parameters), each value
converted by its column type's bind processor where the type has one (a timestamp's UTC text
on SQLite), which is what SQLAlchemy would have sent.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.types import TypeEngine


def bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """How the column type `type_` converts a value for `dialect`'s driver (None: as it is)."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


def driver_value(type_: TypeEngine[Any], value: Any, dialect: Dialect) -> Any:
    """`value` as the column type hands it to the driver (a timestamp's UTC text on SQLite)."""
    process = bind_processor(type_, dialect)
    return value if process is None else process(value)


class DriverRows:
    """`statement` compiled for `dialect` with the parameters `keys`, every one given by each
    row: a column left out that has a default would need SQLAlchemy to compute it, so it is
    refused here rather than written empty. The rows give the values of `bound` already as
    the driver takes them (`bind`): one value shared by every row is converted once."""

    def __init__(
        self,
        statement: ClauseElement,
        dialect: Dialect,
        keys: Sequence[str],
        bound: Sequence[str] = (),
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        missing = set(compiled.binds) - set(keys)
        if missing:
            raise TypeError(f"{sorted(missing)} must be given by every row: {compiled.string}")
        self.sql = compiled.string
        self._processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            process = bind_processor(bind.type, dialect)
            if process is not None:
                self._processors[name] = process
        self._converted = {name: self._processors.pop(name, None) for name in bound}
        # "?" placeholders (sqlite3): each row as a tuple in their order; named ones: as is.
        order = compiled.positiontup
        self._in_order: Callable[[dict[str, Any]], tuple[Any, ...]] | None = None
        if order is not None and len(order) == 1:  # itemgetter of one key: no tuple
            self._in_order = lambda row: (row[order[0]],)
        elif order is not None:
            self._in_order = operator.itemgetter(*order)

    def bind(self, name: str, value: Any) -> Any:
        """`value` of the parameter `name` (one of `bound`) as the driver takes it."""
        process = self._converted[name]
        return value if process is None else process(value)

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> int:
        """Run the statement once per row (the rows' values are converted in place); the
        number of rows it changed, all statements together."""
        for name, process in self._processors.items():
            for row in rows:
                row[name] = process(row[name])
        params: list[Any] = rows if self._in_order is None else list(map(self._in_order, rows))
        return connection.exec_driver_sql(self.sql, params).rowcount
