"""What differs between the two engines' SQL, and the connection the queries run on.

The queries of :mod:`~readme_metrics.collector.store.queries` and
:mod:`~readme_metrics.collector.stats` are written once, in SQL both SQLite and PostgreSQL
run, with ``?`` placeholders; a :class:`Db` runs them on one engine's connection
(``?`` becomes ``%s`` for psycopg, a literal ``%`` is doubled). The few places where the
engines differ are the :class:`Dialect`'s: the integer part of a number (``CAST(x AS
INTEGER)`` truncates in SQLite and rounds in PostgreSQL, hence ``FLOOR`` there), a
case-insensitive ``LIKE``, and a metadata key's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dialect:
    name: str
    #: ``{}``: a non-negative number -> its integer part.
    floor: str
    #: Case-insensitive (at least for ASCII) ``LIKE``.
    like: str
    #: True when the log with ``metadata`` has key ``?`` whose value, as text, is ``?``.
    meta_match: str

    def integer(self, expression: str) -> str:
        return self.floor.format(expression)


SQLITE = Dialect(
    name="sqlite",
    floor="CAST({} AS INTEGER)",
    like="LIKE",
    meta_match=(
        "EXISTS (SELECT 1 FROM json_each(logs.metadata) AS m WHERE m.key = ? AND"
        " (CASE m.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null'"
        " ELSE CAST(m.value AS TEXT) END) = ?)"
    ),
)

POSTGRES = Dialect(
    name="postgresql",
    floor="CAST(FLOOR({}) AS BIGINT)",
    like="ILIKE",
    meta_match="(logs.metadata ->> CAST(? AS TEXT)) = ?",
)


class Db:
    """One connection of either engine: ``rows(sql, args)`` runs a query written with ``?``."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self._postgres = dialect is POSTGRES

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s") if self._postgres else text

    def rows(self, text: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.conn.execute(self.sql(text), list(args))
        return [tuple(row) for row in cursor.fetchall()]

    def run(self, text: str, args: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        return int(self.conn.execute(self.sql(text), list(args)).rowcount)

    def one(self, text: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
        found = self.rows(text, args)
        return found[0]
