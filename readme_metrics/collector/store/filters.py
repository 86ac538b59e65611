"""What the dashboard and its JSON API filter logs by, as a SQL ``WHERE`` clause."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from readme_metrics.collector.store.dialect import SQLITE, Dialect

_STATUS_TOKEN = re.compile(r"^(?:[1-5]xx|errors|\d{1,3})$")
#: ``since`` and ``until`` are Unix seconds from 0 to this (10000-01-01T00:00:00Z).
MAX_FILTER_TIME = 253402300800
#: The values of ``direction``.
DIRECTIONS = ("incoming", "outgoing", "all")
#: The filters' names (query parameters, and keys of an export's ``filters``).
FILTER_NAMES = ("since", "until", "endpoint", "status", "group", "q", "meta_key", "meta_value", "direction", "parent")


@dataclass(frozen=True)
class Filters:
    """What the dashboard filters by; every field optional.

    ``status`` is a comma-separated list of ``2xx``-style classes, exact codes, or
    ``errors`` (400 and above). ``q`` searches the whole stored log (URL, headers, bodies,
    caller), case-insensitively for ASCII. ``meta_key`` and ``meta_value``: logs whose
    metadata has that key with that value (compared as text: ``42``, ``true``).
    ``direction``: ``incoming`` (the default: the API's own requests), ``outgoing`` (the
    calls it made) or ``all``; with ``parent`` (an incoming log's id: the calls made while
    serving it) the default is ``all``.
    """

    since: float | None = None
    until: float | None = None
    endpoint: str | None = None
    status: str | None = None
    group: str | None = None
    q: str | None = None
    meta_key: str | None = None
    meta_value: str | None = None
    direction: str | None = None
    parent: str | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Filters:
        """From URL query parameters (``ValueError`` if one is malformed or out of range)."""
        for name in FILTER_NAMES:
            try:
                params.get(name, "").encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{name} holds a lone UTF-16 surrogate") from None
            if "\x00" in params.get(name, ""):  # no stored text holds one (PostgreSQL refuses it)
                raise ValueError(f"{name} holds a NUL character")

        def number(name: str) -> float | None:
            text = params.get(name, "").strip()
            if not text:
                return None
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number of Unix seconds") from None
            if not 0 <= value <= MAX_FILTER_TIME:  # also NaN and the infinities
                raise ValueError(f"{name} must be Unix seconds from 0 to {MAX_FILTER_TIME}")
            return value

        status = params.get("status", "").strip().lower() or None
        if status is not None:
            for token in status.split(","):
                if not _STATUS_TOKEN.match(token.strip()):
                    raise ValueError(f"status: {token!r} is not a code, a class such as 4xx, or 'errors'")
        direction = params.get("direction", "").strip().lower() or None
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        meta_key, meta_value = params.get("meta_key") or None, params.get("meta_value")
        if meta_key is None and meta_value:
            raise ValueError("meta_value needs meta_key")
        return cls(
            since=number("since"),
            until=number("until"),
            endpoint=params.get("endpoint") or None,
            status=status,
            group=params.get("group") or None,
            q=params.get("q") or None,
            meta_key=meta_key,
            meta_value=meta_value if meta_key is not None else None,
            direction=direction,
            parent=params.get("parent") or None,
        )

    def only_time(self) -> Filters:
        """The time range (and direction) alone: the choices of the filter menus."""
        return Filters(since=self.since, until=self.until, direction=self.direction, parent=self.parent)

    def with_direction(self, direction: str) -> Filters:
        return replace(self, direction=direction)

    def where(self, dialect: Dialect = SQLITE) -> tuple[str, list[Any]]:
        """A SQL ``WHERE`` clause (possibly ``1=1``) and its parameters (``?`` placeholders)."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.since is not None:
            clauses.append("started >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("started < ?")
            args.append(self.until)
        direction = self.direction or ("all" if self.parent else "incoming")
        if direction != "all":
            clauses.append("direction = ?")
            args.append(direction)
        if self.parent:
            clauses.append("parent = ?")
            args.append(self.parent)
        if self.endpoint:
            clauses.append("endpoint = ?")
            args.append(self.endpoint)
        if self.group:
            clauses.append("group_id = ?")
            args.append(self.group)
        if self.status:
            alternatives = []
            for token in (t.strip() for t in self.status.split(",")):
                if token == "errors":
                    alternatives.append("status >= 400")
                elif token.endswith("xx"):
                    alternatives.append("status BETWEEN ? AND ?")
                    args += [int(token[0]) * 100, int(token[0]) * 100 + 99]
                else:
                    alternatives.append("status = ?")
                    args.append(int(token))
            clauses.append("(" + " OR ".join(alternatives) + ")")
        if self.meta_key:
            if self.meta_value is None or self.meta_value == "":
                clauses.append("metadata IS NOT NULL AND " + _meta_has(dialect))
                args.append(self.meta_key)
            else:
                clauses.append("metadata IS NOT NULL AND " + dialect.meta_match)
                args += [self.meta_key, self.meta_value]
        if self.q:
            escaped = self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"seq IN (SELECT seq FROM bodies WHERE log {dialect.like} ? ESCAPE '\\')")
            args.append(f"%{escaped}%")
        return (" AND ".join(clauses) or "1=1"), args


def _meta_has(dialect: Dialect) -> str:
    """True when the log's metadata has key ``?`` (any value)."""
    if dialect.name == "postgresql":
        return "jsonb_exists(logs.metadata, CAST(? AS TEXT))"
    return "EXISTS (SELECT 1 FROM json_each(logs.metadata) AS m WHERE m.key = ?)"
