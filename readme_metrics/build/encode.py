"""From a capture to the bytes of its log: build, mask, encode, scrub the API key.

:class:`Builder` is what the delivery worker calls for each capture. It knows the
configuration's redaction, the ``mask`` hook and the API key; it knows nothing of queues
or of where the bytes go. Each log is encoded on its own (a batch is the exporter's
business: the ReadMe API takes a JSON array of them, a JSON-lines file one per line).

JSON is written by ``orjson`` (a base dependency; about ten times faster than the
standard library, so it holds the GIL that much less), or by the standard library where
``orjson`` cannot be installed. Both write NaN and the infinities as ``null`` (the API
rejects ``NaN``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from readme_metrics._log import warn_limited
from readme_metrics.build.bodies import fill_late, splice_late
from readme_metrics.build.extras import RouteRedactors
from readme_metrics.build.har import build_log
from readme_metrics.build.redaction import Redactor
from readme_metrics.build.secrets import repair
from readme_metrics.capture import Capture, OutgoingCapture, OutgoingLog

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - a platform without orjson wheels
    _orjson = None  # type: ignore[assignment]

Log = dict[str, Any]


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``, NaN and infinities as ``null``.

    Raises :class:`TypeError` or :class:`ValueError` for what JSON cannot hold (a mask
    hook's set, a circular value).
    """
    if _orjson is not None:
        try:
            return _orjson.dumps(value, option=_orjson.OPT_NON_STR_KEYS)
        except TypeError:  # what orjson cannot encode, json may (integers past 64 bits)
            pass
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a non-finite float (from a mask hook); or a circular value
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (value or key) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_finite(k) if isinstance(k, float) else k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


class BuildError(Exception):
    """A capture gave no log: ``reason`` is the ``dropped`` counter it goes to
    (``build_error``, ``mask_error`` or ``encode_error``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Builder:
    """Turns captures into encoded logs for one configuration.

    ``mask``: the user's hook, given each log object last (after redaction); a log it
    fails on is never sent unmasked. ``api_key``: never sent inside a log (the encoded log
    is searched for it, and only a log that holds it is scrubbed and encoded again).
    ``repaired``: called for each log sent with text that UTF-8 cannot hold (lone
    surrogates) replaced by U+FFFD; such a log is kept, never dropped.
    """

    def __init__(
        self,
        redactor: Redactor,
        *,
        development: bool = False,
        log_body: bool = True,
        mask: Callable[[Log], Log] | None = None,
        repaired: Callable[[], None] | None = None,
    ) -> None:
        self.redactor = redactor
        self.repaired = repaired
        self.development = development
        self.log_body = log_body
        self.mask = mask
        #: Each capture's redactor and body setting (a route's policy may change them).
        self.routes = RouteRedactors(redactor, log_body)
        key = redactor.api_key
        #: The API key as it appears in encoded JSON.
        self._key_json = dumps(key)[1:-1] if key else None

    def log(self, capture: Capture, late: list[bytes] | None = None) -> Log:
        """The (redacted, masked) log object of ``capture``. ``late``: where large binary
        bodies go (see :func:`~readme_metrics.build.bodies.splice_late`); only without a
        mask hook, which must see every value. Raises :class:`BuildError`."""
        try:
            redactor, log_body = self.routes.of(capture)
            log = build_log(
                capture,
                redactor,
                development=self.development,
                log_body=log_body,
                late=late if self.mask is None else None,
            )
        except Exception as exc:
            raise BuildError("build_error", f"could not build a log ({type(exc).__name__}: {exc})") from exc
        if self.mask is None:
            return log
        try:
            masked = self.mask(log)
        except Exception as exc:
            raise BuildError("mask_error", f"the mask hook raised {type(exc).__name__}: {exc}; log dropped") from exc
        if not isinstance(masked, dict):
            raise BuildError("mask_error", f"the mask hook returned {type(masked).__name__}, not a dict; log dropped")
        return masked

    def encode(self, capture: Capture) -> bytes:
        """The JSON of ``capture``'s log, without the API key. Raises :class:`BuildError`."""
        late: list[bytes] = []
        log = self.log(capture, late)
        try:
            try:
                data = dumps(log)
            except UnicodeEncodeError:  # a lone surrogate (a JSON escape, a charset, an app's text)
                data = dumps(self._repair(log))
            if self._key_json is not None and self._key_json in data:
                fill_late(log, late)  # rare: the whole log is scrubbed, as any other
                data = dumps(self.redactor.scrub(log))
            if late:
                data = splice_late(data, late)
        except (TypeError, ValueError, RecursionError) as exc:
            raise BuildError("encode_error", f"a log is not JSON-serializable ({exc}); mask hook?") from exc
        if type(capture) is OutgoingCapture:  # marked for the destinations (see OutgoingLog)
            return OutgoingLog(data)
        return data

    def _repair(self, log: Log) -> Log:
        """``log`` with every lone surrogate replaced by U+FFFD and its entry marked
        (``_repaired``: how many strings); counted and warned about (rate-limited)."""
        changed = repair(log)
        try:
            log["request"]["log"]["entries"][0]["_repaired"] = changed
        except (KeyError, IndexError, TypeError):  # a mask hook reshaped the log
            pass
        if self.repaired is not None:
            self.repaired()
        warn_limited(
            "repaired",
            "readme_metrics: a log held text that is not valid Unicode (lone surrogates); "
            "sent with each replaced by U+FFFD, its entry marked '_repaired' (stats()['repaired'] counts them)",
        )
        return log

    def encode_or_count(self, capture: Capture, count: Callable[[str], None]) -> bytes | None:
        """:meth:`encode`, or None: the failure counted (``count(reason)``) and warned
        about (rate-limited per reason)."""
        try:
            return self.encode(capture)
        except BuildError as exc:
            count(exc.reason)
            warn_limited(exc.reason, "readme_metrics: %s", exc)
            return None
