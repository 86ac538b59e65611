"""Outgoing calls made while a request is served: linked to it, and sharing its fate.

The middlewares set a context variable while the app serves a request (:class:`OutgoingLinks`);
an outgoing call (:mod:`readme_metrics.outgoing`) reads it. A call that ends while the
request's fate is not known yet is *held* on the request's :class:`Link` (at most
:data:`MAX_HELD` per request); once the middleware has decided (``keep()``: sampling, route
and view policies, the response-aware ``skip``), :meth:`OutgoingLinks.settle` submits them
after the request's own log, with ``_parent``, the request's group, route policy and
``_weight``, or leaves them out with the request. So a ``_parent`` names a log that is sent
(beyond :data:`MAX_HELD` calls, the next ones are submitted at once, before the request's
fate is known). A request that never finishes drops its held calls with its own state
(nothing global refers to them). A request the filters leave out (``exclude_paths``,
``skip``, a ``log=False`` route, a grouping function returning None) is served with the
:data:`UNLOGGED` link: its calls are not recorded at all.

``docs/outgoing.md`` is the user's guide.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from contextvars import ContextVar, Token
from typing import Any

from readme_metrics._log import warn_limited
from readme_metrics.capture import Capture, Extras, new_log_id

__all__ = ["MAX_HELD", "UNLOGGED", "Link", "OutgoingLinks"]

#: Most calls held per request until its fate is known; the next ones are submitted at once.
MAX_HELD = 64

_lock = threading.Lock()


class Link:
    """The request being served, as an outgoing call made meanwhile sees it: its
    ``capture`` (None for :data:`UNLOGGED`), its configuration, the calls held for it and
    ``kept`` (None while its fate is not known, then True or False)."""

    __slots__ = ("capture", "config", "held", "kept")

    def __init__(self, capture: Capture | None, config: Any, kept: bool | None = None) -> None:
        self.capture = capture
        self.config = config
        self.held: list[tuple[Capture, Any]] = []
        self.kept = kept

    def submit(self, call: Capture, client: Any) -> None:
        """A finished call made while this request was served: held, submitted, or left
        out, by the request's fate. Never raises."""
        with _lock:
            if self.kept is None and len(self.held) < MAX_HELD:
                self.held.append((call, client))
                return
            kept = self.kept
        if kept is False:  # the request is not logged: neither are its calls
            return
        self._adopt(call)
        client.submit(call)

    def settle(self, kept: bool) -> None:
        """The request's fate is known: its held calls follow it (once)."""
        with _lock:
            if self.kept is not None:
                return
            self.kept = kept
            held, self.held = self.held, []
        if kept:
            for call, client in held:
                self._adopt(call)
                client.submit(call)

    def _adopt(self, call: Capture) -> None:
        """The request's group, route policy (lists, ``log_body``) and weight, as they are now."""
        parent = self.capture
        if parent is None:
            return
        if parent.group is not None:
            call.group = parent.group
        extras = parent.extras
        if extras is None:
            return
        mine = Extras(extras.policy, 0.0)
        mine.weight = extras.weight
        policy = extras.policy
        log_body = getattr(self.config, "log_body", True)
        mine.bodies = log_body if policy is None or policy.log_body is None else policy.log_body
        call.extras = mine


#: The link of a request that is not logged: the calls made while serving it are not either.
UNLOGGED = Link(None, None, kept=False)


class OutgoingLinks:
    """Whether the middlewares link outgoing calls to the request being served (``on``,
    set by :func:`readme_metrics.outgoing.instrument`), and the context variable they set
    for it: the request's :class:`Link` while the app serves it. A context variable follows
    ``asyncio`` tasks and ``contextvars.copy_context()``; a thread the app starts without
    copying the context sees none."""

    on = False
    serving: ContextVar[Link | None] = ContextVar("readme_metrics_serving", default=None)

    @classmethod
    def enter(cls, capture: Capture | None, config: Any) -> Token[Link | None] | None:
        """Called by a middleware before the app runs (``capture`` None: the request is not
        logged); the token for :meth:`leave`. A capture with no :class:`Extras` (nothing
        will settle it) has its calls submitted as they end."""
        if not cls.on:
            return None
        if capture is None:
            return cls.serving.set(UNLOGGED)
        if capture.log_id is None:
            capture.log_id = new_log_id()
        extras = capture.extras
        link = Link(capture, config, None if extras is not None else True)
        if extras is not None:
            extras.link = link
        return cls.serving.set(link)

    @classmethod
    def leave(cls, token: Token[Link | None] | None) -> None:
        if token is not None:
            with suppress(ValueError):  # set in another context (an app that moved the call): leave it
                cls.serving.reset(token)

    @staticmethod
    def settle(capture: Capture, kept: bool) -> None:
        """The request's fate is known (after its own log was submitted, when kept): the
        calls held for it are submitted, or left out. Never raises."""
        extras = capture.extras
        link = extras.link if extras is not None else None
        if link is None:
            return
        extras.link = None  # type: ignore[union-attr]
        try:
            link.settle(kept)
        except Exception:  # a bug of ours must not reach the app
            warn_limited("outgoing_settle", "readme_metrics: could not log the outgoing calls of a request")
