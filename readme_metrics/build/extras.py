"""The HAR entry fields of route policies, sampling and hooks (``docs/routes.md``).

On the worker, never on the request path: ``_route`` (the matched template, normalized),
``_weight`` (1 / the sample rate that kept the log), ``_metadata`` (the metadata hook's
dict, redacted like a JSON body) and ``_exception`` (type, message, the innermost
:data:`MAX_FRAMES` frames; the traceback is read from the exception here, and with a list
configured the message is redacted by the same rules). Also the redactor of a route whose
policy adds keys to the lists (:class:`RouteRedactors`).
"""

from __future__ import annotations

import json
import re
from collections import deque
from traceback import walk_tb
from typing import Any

from readme_metrics._log import warn_limited
from readme_metrics.build.redaction import Redactor
from readme_metrics.build.secrets import trim_key_prefix
from readme_metrics.capture import Capture, Extras
from readme_metrics.routes import Route, route_template

#: Frames of a traceback kept: the innermost ones (where it was raised).
MAX_FRAMES = 30
#: Characters of an exception's message kept.
MAX_MESSAGE = 1000
#: An exception's message under an allowlist: free text cannot be judged key by key.
OMITTED_MESSAGE = "[OMITTED MESSAGE: not structured, allowlist]"

#: ``key=value``, ``key: value``, ``"key": "value"``, ``'key': 'value'`` in free text.
_PAIR = re.compile(
    r"""(?P<kq>["']?)(?P<key>[A-Za-z_][\w.\-]*)(?P=kq)(?P<sep>\s*[=:]\s*)"""
    r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?=(?P<bare>[^\s,;&)}\]"'=:]+))(?P=bare)(?![=:]))"""
)


def message_text(message: str, redactor: Redactor) -> str:
    """An exception's message as it may leave: as is without a list; with a denylist the
    value of each ``key=value`` / ``key: value`` pair (quoted or not, JSON or a dict's
    repr) whose key is listed replaced; with an allowlist, omitted (free text)."""
    if redactor.allow:
        return OMITTED_MESSAGE
    if not redactor.deny or not redactor.may_match(message):
        return message

    def replace(match: re.Match[str]) -> str:
        group = "dq" if match.group("dq") is not None else "sq" if match.group("sq") is not None else "bare"
        value = match.group(group)
        new = redactor.value(match.group("key"), value)
        if new is value:
            return match.group(0)
        start, end = match.span(group)
        whole, offset = match.group(0), match.start()
        return whole[: start - offset] + str(new) + whole[end - offset :]

    return _PAIR.sub(replace, message)


def exception_field(exc: BaseException, redactor: Redactor) -> dict[str, Any]:
    """``{"type", "message", "traceback": [{"file", "line", "function"}, ...]}``, frames
    outermost to innermost, at most :data:`MAX_FRAMES` (the innermost)."""
    frames: deque[dict[str, Any]] = deque(maxlen=MAX_FRAMES)
    for frame, line in walk_tb(exc.__traceback__):
        code = frame.f_code
        frames.append({"file": code.co_filename, "line": line, "function": code.co_name})
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails
        message = "<unprintable>"
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE]
        if redactor.api_key is not None:  # cut inside the API key: its prefix goes too
            message = trim_key_prefix(message, redactor.api_key)
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__") else f"{kind.__module__}.{kind.__qualname__}"
    return {"type": name, "message": message_text(message, redactor), "traceback": list(frames)}


def metadata_field(metadata: dict[str, Any], redactor: Redactor) -> dict[str, Any] | None:
    """The metadata hook's dict as JSON, redacted at every depth as a JSON body is; None
    (warned about) when it is not JSON-serializable."""
    try:
        text = json.dumps(metadata, default=str, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        warn_limited("metadata", "readme_metrics: the metadata hook returned what JSON cannot hold (%s)", exc)
        return None
    doc = redactor.loads(text) if redactor.active else json.loads(text)
    return doc if isinstance(doc, dict) else None


def add_extras(entry: dict[str, Any], extras: Extras, redactor: Redactor) -> None:
    """The fields of ``extras`` added to a HAR entry (each absent when not applicable)."""
    if extras.route is not None:
        entry["_route"] = route_template(extras.route)
    if extras.weight != 1.0:
        entry["_weight"] = extras.weight
    if extras.metadata is not None:
        metadata = metadata_field(extras.metadata, redactor)
        if metadata is not None:
            entry["_metadata"] = metadata
    if extras.exception is not None:
        entry["_exception"] = exception_field(extras.exception, redactor)
    if not extras.sampled:
        note = "sampled out: logged for its outcome (5xx, exception or slow), without bodies"
        entry["comment"] = f"{entry['comment']}; {note}" if entry.get("comment") else note


class RouteRedactors:
    """The redactor and body setting of each capture: the configuration's, or, for a
    route whose policy adds keys to the lists, a redactor with them (made once per policy;
    bounded)."""

    def __init__(self, base: Redactor, log_body: bool, limit: int = 256) -> None:
        self.base = base
        self.log_body = log_body
        self.limit = limit
        self._made: dict[Route, Redactor] = {}

    def of(self, capture: Capture) -> tuple[Redactor, bool]:
        extras = capture.extras
        if extras is None:
            return self.base, self.log_body
        policy, log_body = extras.policy, extras.bodies
        if policy is None or not (policy.denylist or policy.allowlist or policy.max_body_bytes):
            return self.base, log_body
        redactor = self._made.get(policy)
        if redactor is None:
            base = self.base
            redactor = Redactor(
                base.deny | {k.casefold() for k in policy.denylist},
                base.allow | {k.casefold() for k in policy.allowlist},
                send_cookies=base.send_cookies,
                max_body_bytes=max(base.max_body_bytes, policy.max_body_bytes or 0),
            )
            redactor.api_key, redactor.key_bytes, redactor.credential = base.api_key, base.key_bytes, base.credential
            if len(self._made) >= self.limit:
                self._made.clear()
            self._made[policy] = redactor
        return redactor, log_body
