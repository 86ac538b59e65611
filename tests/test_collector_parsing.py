"""The collector's fast JSON path (orjson, peeled depth) answers exactly as the standard library did.

``parse_json`` parses with orjson when it can and falls back to the standard library for
what orjson refuses or would read differently (integers beyond 64 bits); ``json_cost``
finds the depth of balanced brackets in C-speed passes. Both are checked here against the
standard library and the byte-by-byte count, then end to end against a real collector.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readme_metrics.collector.ingest import json_cost, parse_json
from readme_metrics.collector.storage import parse_time
from tests.collector_rig import collector, get_json, make_log, post
from tests.servers import Server

pytestmark = pytest.mark.timeout(180)

KEY = "parsing-key"

_text = st.text(alphabet=st.sampled_from('[]{},:"\\ aé\n0123456789\u2028\U0001f600'), max_size=12)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson would make them floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=60,
)


def stdlib(body: bytes) -> Any:
    """What the collector's parser answered before orjson: the standard library's, strict."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"the number {text[:40]} is too large")
        return value

    return json.loads(body.decode("utf-8", "surrogatepass"), parse_constant=refuse, parse_float=finite)


def outcome(parse: Any, body: Any) -> tuple[str, Any]:
    try:
        value = parse(body)
    except ValueError as exc:
        return "error", f"{type(exc).__name__}: {exc}"
    # repr: 1 and 1.0 (and -0.0 and 0.0) are told apart.
    return "value", repr(value)


@settings(max_examples=300, deadline=None)
@given(value=_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 2]))
def test_valid_json_parses_to_the_same_value(value: Any, ensure_ascii: bool, indent: int | None) -> None:
    body = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()
    assert outcome(parse_json, body) == outcome(stdlib, body)


@pytest.mark.parametrize(
    "body",
    [
        b"123456789012345678901234567890",  # orjson: a float
        b"-9223372036854775809",  # just below int64: orjson a float
        b"18446744073709551616",  # just above uint64
        b"[1e400]",
        b"[-1e400]",
        b"[NaN]",
        b"[Infinity]",
        b"[-Infinity]",
        b'"\\ud800"',  # a lone surrogate escaped: passes, refused later as a log
        b'"\xed\xa0\x80"',  # ... encoded (surrogatepass)
        b"\xef\xbb\xbf[1]",  # a byte order mark
        b"\xff\xfe\x00",
        b"",
        b"{not json",
        b"[1,]",
        b"[\x0c1]",
        b'{"a": 1, "a": 2}',
        b"[0.1e1, -0, -0.0, 1E2, 1.5e-400]",
        b'"\\u0000"',
        b"[1] x",
    ],
)
def test_edge_cases_parse_or_fail_as_before(body: bytes) -> None:
    assert outcome(parse_json, body) == outcome(stdlib, body)


def reference_depth(text: bytes) -> int:
    """The depth as ``json_cost`` counted it before peeling: a running sum over the skeleton."""
    skeleton = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = bytes(b for b in skeleton if b in b'"[]{},:').replace(b'""', b"")
    skeleton = re.sub(rb'"[^"]*"', b"", skeleton)
    steps = (1 if b in b"[{" else -1 if b in b"]}" else 0 for b in skeleton)
    return max(accumulate(steps), default=0)


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=st.sampled_from('[]{},:"\\ 1'), max_size=60))
def test_the_depth_of_any_text_is_the_byte_count(text: str) -> None:
    """Unbalanced, mismatched, truncated: the fast path never changes the depth found."""
    body = text.encode()
    assert json_cost(body, 10**9)[1] == reference_depth(body)


@pytest.mark.parametrize("depth", [0, 1, 5, 64, 65, 99, 100, 101, 150])
def test_deep_balanced_and_unbalanced_nesting(depth: int) -> None:
    assert json_cost(b"[" * depth + b"]" * depth, 10**9)[1] == depth
    assert json_cost(b"[" * depth, 10**9)[1] == depth  # truncated
    assert json_cost(b"{" * depth + b"}" * depth, 10**9)[1] == depth
    assert json_cost(b"]" + b"[" * depth + b"]" * depth, 10**9)[1] == depth - 1  # as counted before: a running sum


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = collector(tmp_path_factory.mktemp("parsing") / "logs.sqlite3", "--api-key", KEY)
    yield srv
    srv.stop()


def test_big_integers_are_stored_exactly(server: Server) -> None:
    """An integer beyond 64 bits in a log comes back as that integer, not a rounded float."""
    log = make_log(url=f"http://api.test/big?m={uuid.uuid4().hex}")
    big = 123456789012345678901234567890
    log["request"]["log"]["entries"][0]["request"]["headers"][0]["_big"] = big
    log["request"]["log"]["entries"][0]["request"]["headers"][0]["_edge"] = -(2**63) - 1
    assert post(server.url, [log], key=KEY) == (202, {"accepted": 1, "stored": 1})
    stored = get_json(server.url, f"/api/logs/{log['_id']}")
    assert stored == log
    header = stored["request"]["log"]["entries"][0]["request"]["headers"][0]
    assert header["_big"] == big and isinstance(header["_big"], int)
    assert header["_edge"] == -(2**63) - 1 and isinstance(header["_edge"], int)


def test_not_json_answers_are_the_standard_librarys(server: Server) -> None:
    """The reason a refused body gets names the standard library's error, as before."""
    status, answer = post(server.url, None, raw=b'[{"a": 1,}]', key=KEY)
    assert status == 400
    assert answer["error"].startswith("the body is not JSON: Expecting property name enclosed in double quotes")


def datetime_parse_time(text: str) -> float:
    """The log's start as computed before the minute cache: one ``datetime`` per log."""
    match = re.match(
        r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|z|[+-]\d{2}(?::?\d{2})?)?$", text.strip()
    )
    if not match:
        raise ValueError(f"not an ISO 8601 time: {text[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = timedelta(0)
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)
    return moment.timestamp() - offset.total_seconds() + (float("0." + fraction) if fraction else 0.0)


_two = st.integers(0, 99).map(lambda n: f"{n:02d}")


@settings(max_examples=500, deadline=None)
@given(
    year=st.integers(1, 9999).map(lambda n: f"{n:04d}"),
    month=st.sampled_from(["01", "02", "06", "12", "00", "13"]),
    day=st.sampled_from(["01", "28", "29", "30", "31", "00", "32"]),
    hour=st.sampled_from(["00", "12", "23", "24"]),
    minute=st.sampled_from(["00", "59", "60"]),
    second=_two,
    fraction=st.sampled_from(["", ".5", ",25", ".496", ".123456789"]),
    zone=st.sampled_from(["", "Z", "z", "+00:00", "-08:00", "+0530", "+01", "-23:59"]),
    sep=st.sampled_from(["T", " "]),
)
def test_start_times_parse_as_before(
    year: str, month: str, day: str, hour: str, minute: str, second: str, fraction: str, zone: str, sep: str
) -> None:
    text = f"{year}-{month}-{day}{sep}{hour}:{minute}:{second}{fraction}{zone}"
    assert outcome(parse_time, text) == outcome(datetime_parse_time, text)
