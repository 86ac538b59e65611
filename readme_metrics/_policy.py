"""Route policies, sampling and the hooks that see the response, on the request path.

Shared by the three adapters (WSGI, ASGI, Django); ``docs/routes.md`` is the user's guide.
Per exchange, in order:

1. :meth:`Policies.start` (before any capture work): the policy of the path (``routes=``,
   decided once per path, cached); ``log=False`` ends it here: the request is not captured.
   The sampling draw is made now, so that bodies are copied only for a request that
   sampling keeps (:meth:`Policies.limit`).
2. :meth:`Policies.view` (once the framework has routed, before the view reads the body):
   a view's own ``@Route(...)`` is merged over the path's policy; the body limits follow.
3. :meth:`Policies.keep` (when the exchange is over, after the response went out): a
   request sampling left out is still logged when it got a 5xx, raised, or was slower than
   ``always_log_slower_than_ms`` (without bodies: they were not copied); the weight is set;
   then the response-aware hooks run: ``skip(request, response)`` and
   ``metadata(request, response)``, guarded (one that raises logs a warning and the
   request is still logged).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from random import random
from typing import TYPE_CHECKING, Any

from readme_metrics._hooks import takes_response
from readme_metrics._log import warn_limited
from readme_metrics.capture import Capture, Extras, header_pairs
from readme_metrics.routes import Route, RouteTable, view_route

if TYPE_CHECKING:
    from readme_metrics.config import MetricsApiConfig

__all__ = ["Policies", "ResponseView", "view_route"]


class ResponseHeaders(Mapping[str, str]):
    """A response's headers, read-only: ``headers["content-type"]`` (case-insensitive,
    the first value), ``getlist(name)``, ``items()`` (every pair, in order)."""

    __slots__ = ("_pairs",)

    def __init__(self, raw: Sequence[Sequence[Any]]) -> None:
        self._pairs = header_pairs(raw)

    def __getitem__(self, name: str) -> str:
        low = name.lower()
        for key, value in self._pairs:
            if key.lower() == low:
                return value
        raise KeyError(name)

    def getlist(self, name: str) -> list[str]:
        low = name.lower()
        return [value for key, value in self._pairs if key.lower() == low]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(key for key, _ in self._pairs))

    def __len__(self) -> int:
        return len({key.lower() for key, _ in self._pairs})

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._pairs)


class ResponseView:
    """The response a hook gets where the framework has no response object of its own
    (WSGI, ASGI): ``status`` (also ``status_code``) and ``headers``, read-only."""

    __slots__ = ("_headers", "_raw", "status")

    def __init__(self, status: int, headers: Sequence[Sequence[Any]]) -> None:
        self.status = status
        self._raw = headers
        self._headers: ResponseHeaders | None = None

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def headers(self) -> ResponseHeaders:
        if self._headers is None:
            self._headers = ResponseHeaders(self._raw)
        return self._headers

    def __repr__(self) -> str:
        return f"<ResponseView {self.status}>"

    @classmethod
    def of(cls, capture: Capture) -> ResponseView:
        return cls(capture.status, capture.response_headers)


def _guarded(name: str, fn: Any, convert: Callable[[Any], Any], *args: Any) -> tuple[bool, Any]:
    """``(True, convert(fn(*args)))``, or ``(False, None)`` when either raised or ``fn`` is
    ``async def`` (warned about, rate-limited). ``convert`` runs inside the guard: an odd
    result (a ``__bool__`` that raises, a mapping that cannot be read) is the hook's failure."""
    try:
        result = fn(*args)
        if not inspect.isawaitable(result):
            return True, convert(result)
    except Exception as exc:
        warn_limited(
            name, "readme_metrics: the %s hook raised %s: %s; logging the request", name, type(exc).__name__, exc
        )
        return False, None
    close = getattr(result, "close", None)
    if close is not None:
        with suppress(Exception):
            close()
    warn_limited(
        name + "_async", "readme_metrics: the %s hook must be a plain function (it runs after the response)", name
    )
    return False, None


class _NotAMapping:
    """What :func:`_metadata_dict` gives for a result that is not a mapping."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


def _metadata_dict(result: Any) -> Any:
    """The metadata hook's result as a new dict (None stays None)."""
    if result is None:
        return None
    if isinstance(result, Mapping):
        return dict(result)
    return _NotAMapping(type(result).__name__)


class Policies:
    """The route policies, the sampling and the response-aware hooks of one configuration."""

    __slots__ = ("default_max", "log_body", "metadata", "rate", "response_skip", "sampling", "slow", "table")

    def __init__(self, config: MetricsApiConfig) -> None:
        routes: Mapping[str, Route] = getattr(config, "routes", None) or {}
        self.table = RouteTable(routes) if routes else None
        self.rate: float = getattr(config, "sample_rate", 1.0)
        self.sampling = self.rate < 1.0 or any(r.sample_rate is not None and r.sample_rate < 1 for r in routes.values())
        slow = getattr(config, "always_log_slower_than_ms", None)
        self.slow: float | None = None if slow is None else slow / 1000.0
        self.metadata = getattr(config, "metadata", None)
        skip = config.skip
        self.response_skip = skip if skip is not None and takes_response(skip) else None
        self.log_body = config.log_body
        self.default_max = config.max_body_bytes

    @property
    def after_response(self) -> bool:
        """Whether :meth:`keep` runs a hook (the adapters then keep the request at hand)."""
        return self.metadata is not None or self.response_skip is not None

    def start(self, path: str) -> Extras | None:
        """This request's extras, or None when its route is never logged."""
        policy = self.table.for_path(path) if self.table is not None else None
        if policy is not None and not policy.log:
            return None
        # Always drawn (a view's own sample_rate is known only once the framework routed).
        return Extras(policy, random())

    def limit(self, extras: Extras) -> int:
        """Most bytes of each body to copy under ``extras``' policy and draw (0: none).
        Sets ``sampled`` and ``bodies``."""
        policy = extras.policy
        if policy is None and not self.sampling:  # the common case: app-wide settings
            extras.bodies = self.log_body
            return self.default_max if self.log_body else 0
        rate = self.rate if policy is None or policy.sample_rate is None else policy.sample_rate
        extras.sampled = sampled = extras.draw < rate
        log_body = self.log_body if policy is None or policy.log_body is None else policy.log_body
        extras.bodies = bodies = sampled and log_body
        if not bodies:
            return 0
        return self.default_max if policy is None or policy.max_body_bytes is None else policy.max_body_bytes

    def view(self, capture: Capture, view: Route | None) -> None:
        """A view's own policy, once the framework routed (before the view reads the
        body): merged over the path's; the body limits follow it (a body already begun
        keeps its limit)."""
        extras = capture.extras
        if view is None or extras is None or extras.policy is view:
            return
        extras.policy = policy = (extras.policy or Route()).merged(view)
        limit = 0 if not policy.log else self.limit(extras)
        extras.dropped = not policy.log
        for body in (capture.request_body, capture.response_body):
            if not body.size:
                body.limit = limit

    def keep(self, capture: Capture, request: Callable[[], Any], response: Any = None) -> bool:
        """Whether the finished ``capture`` is to be logged (see the module docstring).
        ``request``: makes what the hooks get (called only when a hook runs);
        ``response``: the framework's response, else a :class:`ResponseView` is made."""
        extras = capture.extras
        if extras is None:
            return True
        if extras.dropped:
            return False
        policy = extras.policy
        rate = self.rate if policy is None or policy.sample_rate is None else policy.sample_rate
        if rate < 1.0 or not extras.sampled:  # sampling: kept by the draw, or by the outcome
            # A client that went away is no exception of the app's.
            always = capture.status >= 500 or (capture.error is not None and not extras.gone)
            if not always and self.slow is not None and capture.end_mono is not None:
                always = capture.end_mono - capture.start_mono >= self.slow
            if not always:
                if not extras.sampled:
                    return False
                extras.weight = 1.0 / rate  # 0 < rate < 1 here: a draw below 0 never keeps
        if self.response_skip is None and self.metadata is None:
            return True
        req = request()
        if response is None:
            response = ResponseView.of(capture)
        if self.response_skip is not None:
            ok, skip = _guarded("skip", self.response_skip, bool, req, response)
            if ok and skip:
                return False
        if self.metadata is not None:
            ok, metadata = _guarded("metadata", self.metadata, _metadata_dict, req, response)
            if isinstance(metadata, _NotAMapping):
                warn_limited("metadata", "readme_metrics: the metadata hook returned %s, not a dict", metadata.kind)
            elif ok and metadata is not None:
                extras.metadata = metadata
        return True

    def decide(
        self, capture: Capture, routed: Callable[[], None], request: Callable[[], Any], response: Any = None
    ) -> bool:
        """:meth:`keep`, after ``routed()`` (the adapter's: the matched route and the view's
        policy), guarded: a failure there (a bug of ours, a framework's odd object) logs a
        warning and the request is logged. The adapters then submit the capture when
        kept, and settle its outgoing calls (``readme_metrics._links``) either way."""
        try:
            routed()
            return self.keep(capture, request, response)
        except Exception as exc:
            warn_limited(
                "keep",
                "readme_metrics: could not apply the route policy or hooks (%s: %s); logging the request",
                type(exc).__name__,
                exc,
            )
            return True
