"""The methods the outgoing instrumentation puts on a library's classes, and how to put
the library's own back: each ``for_*`` module keeps one :class:`Patches`."""

from __future__ import annotations

from typing import Any


class Patches:
    """Our methods on library classes, with the ones they replaced."""

    def __init__(self) -> None:
        self._saved: list[tuple[type, str, Any, Any]] = []

    def __bool__(self) -> bool:
        return bool(self._saved)

    def put(self, cls: type, name: str, original: Any, ours: Any) -> None:
        """Set ``cls.name`` to ``ours`` (``original`` being what was there)."""
        setattr(cls, name, ours)
        self._saved.append((cls, name, original, ours))

    def restore(self) -> None:
        """Put each original back, the very same object, unless someone wrapped ours since
        (theirs then stays, and calls ours, which records nothing once uninstrumented)."""
        for cls, name, original, ours in reversed(self._saved):
            if cls.__dict__.get(name) is ours:
                setattr(cls, name, original)
        self._saved.clear()
