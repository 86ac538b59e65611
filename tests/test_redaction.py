"""Redaction in the shared core: property tests (Hypothesis) and unit tests.

Captures are built directly (what either middleware would record) and turned into log
objects by the real :class:`~readme_metrics.delivery.Client`; the logs are serialized with
the delivery encoder and posted to the real :class:`MetricsStandIn`. What is checked is
the JSON that arrived there.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import string
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from readme_metrics import MetricsApiConfig
from readme_metrics._hooks import Hooks
from readme_metrics.build import Builder, redaction
from readme_metrics.build.bodies import ENCODED, LATE_AT, MULTIPART, NOT_STRUCTURED, TRUNCATED, UNPARSABLE, decompress
from readme_metrics.build.har import build_log
from readme_metrics.build.redaction import REDACTED, Redactor, looks_json, mask, redacted
from readme_metrics.capture import BodyCopy, Capture
from readme_metrics.delivery import Client
from readme_metrics.exporters.readme import json_array
from tests.standin import MetricsStandIn, entry, header_value

API_KEY = "test-api-key"
#: What the builder of a configuration with API_KEY makes of an Authorization value.
credential = Redactor(api_key=API_KEY).credential
ALNUM = string.ascii_letters + string.digits


@pytest.fixture(scope="module")
def standin() -> Iterator[MetricsStandIn]:
    with MetricsStandIn(API_KEY) as api:
        yield api


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _body(data: bytes, limit: int = 1 << 20) -> BodyCopy:
    copy = BodyCopy(limit)
    copy.add(data)
    return copy


def make_capture(
    *,
    method: str = "POST",
    path: str = "/things",
    query: str = "",
    request_headers: list[tuple[str, str]] | None = None,
    request_body: bytes = b"",
    response_headers: list[tuple[str, str]] | None = None,
    response_body: bytes = b"",
    status: int = 200,
    limit: int = 1 << 20,
    group: Any = None,
) -> Capture:
    capture = Capture(
        method=method,
        scheme="http",
        host="api.example.test",
        path=path,
        query=query,
        http_version="HTTP/1.1",
        client_address="203.0.113.7",
        request_headers=request_headers or [],
        request_body=_body(request_body, limit),
        response_body=_body(response_body, limit),
        group=group if group is not None else {"api_key": "caller-key-1234", "label": "Caller"},
    )
    capture.response_started(status, response_headers or [])
    capture.finish(True)
    return capture


def config(**options: Any) -> MetricsApiConfig:
    options.setdefault("metrics_server", "http://127.0.0.1:9")
    return MetricsApiConfig(API_KEY, None, **options)


def encoded_batch(capture: Capture, cfg: MetricsApiConfig) -> bytes:
    """The batch a real Client's worker would post for one capture: its log built,
    encoded, searched for the API key (scrubbed if found), as a JSON array."""
    return json_array([Client(cfg).builder.encode(capture)])


def deliver(standin: MetricsStandIn, session: requests.Session, capture: Capture, cfg: MetricsApiConfig) -> str:
    """Build the batch with a real Client (as its worker does), post it to the stand-in;
    the JSON that arrived."""
    body = encoded_batch(capture, cfg)
    before = len(standin.logs)
    response = session.post(
        f"{standin.url}/v1/request",
        data=body,
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode(),
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert response.status_code == 200
    arrived = standin.logs[before:]
    assert len(arrived) == 1
    return json.dumps(arrived[0], ensure_ascii=False)


def build(capture: Capture, **options: Any) -> dict[str, Any]:
    """The HAR entry of a capture under a config (no network; no API key scrub, which the
    delivery worker does: see :func:`encoded_batch`)."""
    cfg = config(**options)
    return entry(build_log(capture, Redactor.from_config(cfg), development=False, log_body=cfg.log_body))


# ======================================================================================
# Property tests
# ======================================================================================

token = st.text(ALNUM, min_size=16, max_size=16)
key_text = st.text(string.ascii_letters, min_size=3, max_size=10)


class Generated:
    """The secrets (must not arrive), the kept values (must arrive), and a case mixer."""

    def __init__(self, data: st.DataObject, deny: list[str], allow: list[str] | None = None) -> None:
        self.data = data
        self.deny = deny
        self.allow = allow
        self.secrets: list[str] = []
        self.keeps: list[str] = []
        self.drops: list[str] = []
        #: Keys not on the allowlist whose values are replaced: the keys arrive (3.4.0).
        self.drop_keys: list[str] = []
        self.n = 0

    def vary(self, key: str) -> str:
        flags = self.data.draw(st.lists(st.booleans(), min_size=len(key), max_size=len(key)))
        return "".join(c.upper() if f else c.lower() for c, f in zip(key, flags, strict=True))

    def _unique(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}x{self.data.draw(token)}"

    def secret(self) -> str:
        value = self._unique("SECRET")
        self.secrets.append(value)
        return value

    def keep(self) -> str:
        value = self._unique("KEEP")
        self.keeps.append(value)
        return value

    def drop(self) -> str:
        value = self._unique("DROP")
        self.drops.append(value)
        return value

    def other_key(self) -> str:
        """A key on neither list (lists hold letters only; this one ends in digits)."""
        self.n += 1
        return f"o{self.data.draw(key_text)}{self.n}"

    def kept_key(self) -> str:
        """A key whose value is sent: on the allowlist (if any), not on the denylist."""
        if self.allow is None:
            return self.other_key()
        return self.vary(self.data.draw(st.sampled_from(self.allow)))

    def secret_anything(self, depth: int) -> Any:
        """Any JSON value made of secrets only (a denylisted key's value)."""
        kind = self.data.draw(st.sampled_from(["str", "int", "obj", "arr"] if depth < 3 else ["str", "int"]))
        if kind == "str":
            return self.secret()
        if kind == "int":
            value = self.data.draw(st.integers(10**17, 10**18))
            self.secrets.append(str(value))
            return value
        if kind == "obj":
            return {self.other_key(): self.secret_anything(depth + 1) for _ in range(self.data.draw(st.integers(1, 3)))}
        return [self.secret_anything(depth + 1) for _ in range(self.data.draw(st.integers(1, 3)))]

    def dropped_anything(self, depth: int) -> Any:
        if depth < 3 and self.data.draw(st.booleans()):
            return [{self.other_key(): self.drop()}]
        return self.drop()

    def doc(self, depth: int = 0) -> Any:
        """A JSON object whose denylisted keys hold secrets (at any depth, arrays included)."""
        out: dict[str, Any] = {}
        used: set[str] = set()
        for _ in range(self.data.draw(st.integers(1, 4))):
            choice = self.data.draw(st.sampled_from(["deny", "keep", "nested", "array", "drop"]))
            if choice == "deny":
                key = self.vary(self.data.draw(st.sampled_from(self.deny)))
            elif choice == "drop" and self.allow is not None:
                key = self.other_key()
            else:
                key = self.kept_key()
            if key.casefold() in used:
                continue  # one key once per object (a repeat would hide the first value)
            used.add(key.casefold())
            if choice == "deny":
                out[key] = self.secret_anything(depth)
            elif choice == "drop" and self.allow is not None:
                out[key] = self.dropped_anything(depth)
                self.drop_keys.append(key)
            elif choice in ("nested", "array") and depth < 3:
                out[key] = self.doc(depth + 1) if choice == "nested" else [self.doc(depth + 1), self.keep()]
            else:
                out[key] = self.keep()
        return out

    def pairs(self) -> list[tuple[str, str]]:
        """Name/value pairs (query, form fields, headers) with denylisted names."""
        out = []
        for _ in range(self.data.draw(st.integers(1, 5))):
            choice = self.data.draw(st.sampled_from(["deny", "keep", "drop"]))
            if choice == "deny":
                out.append((self.vary(self.data.draw(st.sampled_from(self.deny))), self.secret()))
            elif choice == "drop" and self.allow is not None:
                out.append((self.other_key(), self.drop()))
                self.drop_keys.append(out[-1][0])
            else:
                out.append((self.kept_key(), self.keep()))
        return out

    def multipart(self) -> tuple[bytes, str]:
        boundary = "b" + self.data.draw(token)
        parts = []
        for name, value in self.pairs():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n')
        # A file part: its content never leaves, whatever its name.
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{self.kept_key()}"; filename="a.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\n{self.secret()}\r\n"
        )
        return ("".join(parts) + f"--{boundary}--\r\n").encode(), boundary


def generated_capture(g: Generated) -> Capture:
    data = g.data
    query_pairs = g.pairs()
    separator = data.draw(st.sampled_from(["&", ";"]))
    query = separator.join(urlencode([p]) for p in query_pairs)

    headers = [(name, value) for name, value in g.pairs()]
    # Secret by default, whatever the lists say.
    for name in data.draw(st.lists(st.sampled_from(["Authorization", "Cookie", "Proxy-Authorization"]), unique=True)):
        headers.append((g.vary(name), g.secret()))

    kind = data.draw(st.sampled_from(["json", "form", "multipart"]))
    if kind == "json":
        content_type = data.draw(
            st.sampled_from(["application/json", "application/vnd.api+json", "application/json; charset=utf-8"])
        )
        body = json.dumps(g.doc()).encode()
    elif kind == "form":
        content_type = "application/x-www-form-urlencoded"
        body = urlencode(g.pairs()).encode()
    else:
        body, boundary = g.multipart()
        content_type = f"multipart/form-data; boundary={boundary}"
    headers.append(("Content-Type", content_type))

    response_doc: Any = g.doc()
    if data.draw(st.booleans()):
        response_doc = [response_doc, g.doc()]  # objects inside a top-level array
    response_headers = [*g.pairs(), ("Content-Type", "application/problem+json")]
    if data.draw(st.booleans()):
        response_headers.append((g.vary("Set-Cookie"), f"sid={g.secret()}; Path=/; HttpOnly"))
    return make_capture(
        query=query,
        request_headers=headers,
        request_body=body,
        response_headers=response_headers,
        response_body=json.dumps(response_doc).encode(),
    )


PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(data=st.data(), deny=st.lists(key_text, min_size=1, max_size=4, unique_by=str.casefold))
def test_property_denylisted_values_never_arrive(
    standin: MetricsStandIn, session: requests.Session, data: st.DataObject, deny: list[str]
) -> None:
    g = Generated(data, deny)
    capture = generated_capture(g)
    cfg = config(denylist=[g.vary(k) for k in deny])
    arrived = deliver(standin, session, capture, cfg)
    for secret in g.secrets:
        assert secret not in arrived
    for kept in g.keeps:
        assert kept in arrived
    assert '"encoding": "base64"' not in arrived


@PROPERTY
@given(
    data=st.data(),
    allow=st.lists(key_text, min_size=1, max_size=4, unique_by=str.casefold),
    deny=st.lists(key_text, min_size=1, max_size=3, unique_by=str.casefold),
)
def test_property_allowlist_replaces_unlisted_values_and_denylist_wins(
    standin: MetricsStandIn, session: requests.Session, data: st.DataObject, allow: list[str], deny: list[str]
) -> None:
    # Some keys on both lists: the denylist wins for them.
    allow = allow + deny[: data.draw(st.integers(0, len(deny)))]
    allowed_only = [k for k in allow if k.casefold() not in {d.casefold() for d in deny}]
    if not allowed_only:
        allowed_only = ["zzkeepzz"]
        allow = [*allow, "zzkeepzz"]
    g = Generated(data, deny, allowed_only)
    capture = generated_capture(g)
    arrived = deliver(standin, session, capture, config(denylist=deny, allowlist=[g.vary(k) for k in allow]))
    for secret in g.secrets + g.drops:
        assert secret not in arrived
    for kept in g.keeps:
        assert kept in arrived
    for key in g.drop_keys:  # unlisted keys are kept, their values replaced
        assert key in arrived


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "A", "b", "Key", "kEY", "c"]), children, max_size=4)
    ),
    max_leaves=20,
)


def reference_tree_walk(value: Any, deny: set[str], allow: set[str]) -> Any:
    """The lists applied to a parsed JSON document the plain way (the reference that the
    parse-time redaction of :meth:`Redactor.loads` must equal)."""
    deny = {k.casefold() for k in deny}
    allow = {k.casefold() for k in allow}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            k = key.casefold()
            if k in deny or (allow and k not in allow):
                out[key] = redacted(item)
            else:
                out[key] = reference_tree_walk(item, deny, allow)
        return out
    if isinstance(value, list):
        return [reference_tree_walk(item, deny, allow) for item in value]
    return value


@settings(max_examples=200, deadline=None)
@given(doc=json_values, deny=st.sets(st.sampled_from(["a", "KEY"])), allow=st.sets(st.sampled_from(["A", "b", "key"])))
def test_property_parse_time_redaction_equals_the_tree_walk(doc: Any, deny: set[str], allow: set[str]) -> None:
    redactor = Redactor(deny, allow)
    assert redactor.loads(json.dumps(doc)) == reference_tree_walk(doc, deny, allow)


# ======================================================================================
# Headers, query, URL
# ======================================================================================


def test_headers_match_case_insensitively_in_requests_and_responses() -> None:
    capture = make_capture(
        request_headers=[("X-API-TOKEN", "req-secret-1"), ("x-other", "fine")],
        response_headers=[("x-Api-Token", "resp-secret-2")],
    )
    e = build(capture, denylist=["x-api-token"])
    assert header_value(e["request"]["headers"], "x-api-token") == redacted("req-secret-1")
    assert header_value(e["request"]["headers"], "x-other") == "fine"
    assert header_value(e["response"]["headers"], "x-api-token") == redacted("resp-secret-2")


def test_secret_headers_by_default_and_send_cookies_opt_in() -> None:
    capture = make_capture(
        request_headers=[
            ("cookie", "session=abc123; theme=dark"),
            ("Proxy-Authorization", "Basic cHJveHk6cGFzcw=="),
            ("AUTHORIZATION", "Bearer tok-9f8e7d6c"),
        ],
        response_headers=[("Set-Cookie", "session=new456; Path=/; HttpOnly")],
    )
    e = build(capture)
    headers = e["request"]["headers"]
    assert header_value(headers, "cookie") == redacted("session=abc123; theme=dark")
    assert header_value(headers, "proxy-authorization") == credential("Basic cHJveHk6cGFzcw==")
    assert header_value(headers, "proxy-authorization").startswith('Basic user="proxy" hmac-sha256:')
    assert header_value(headers, "authorization") == credential("Bearer tok-9f8e7d6c")
    assert "7d6c" not in header_value(headers, "authorization")
    assert header_value(e["response"]["headers"], "set-cookie") == redacted("session=new456; Path=/; HttpOnly")

    # Opted in: sent, with each cookie still judged by the lists.
    e = build(capture, send_cookies=True, denylist=["SESSION"])
    assert header_value(e["request"]["headers"], "cookie") == "session=[REDACTED 6]; theme=dark"
    assert header_value(e["response"]["headers"], "set-cookie") == "session=[REDACTED 6]; Path=/; HttpOnly"
    # Proxy-Authorization and Authorization are masked even with cookies on (a credential,
    # not a cookie); a denylist entry redacts them.
    assert header_value(e["request"]["headers"], "proxy-authorization") == credential("Basic cHJveHk6cGFzcw==")
    assert "cHJveHk6cGFzcw" not in json.dumps(e)
    assert header_value(e["request"]["headers"], "authorization") == credential("Bearer tok-9f8e7d6c")
    e = build(capture, denylist=["authorization"])
    assert header_value(e["request"]["headers"], "authorization") == redacted("Bearer tok-9f8e7d6c")


def test_query_redacted_in_query_string_url_and_pageref() -> None:
    capture = make_capture(method="GET", query="page=2&Api_Key=qs-secret-77;TOKEN=qs-secret-88&empty=")
    e = build(capture, denylist=["api_key", "token"])
    params = {q["name"]: q["value"] for q in e["request"]["queryString"]}
    assert params == {"page": "2", "Api_Key": redacted("qs-secret-77"), "TOKEN": redacted("qs-secret-88"), "empty": ""}
    for url in (e["request"]["url"], e["pageref"]):
        assert "qs-secret" not in url
        assert url.startswith("http://api.example.test/things?page=2&Api_Key=")
    # Without lists the URL is the one requested.
    e = build(capture)
    assert e["request"]["url"].endswith("?page=2&Api_Key=qs-secret-77;TOKEN=qs-secret-88&empty=")


def test_allowlist_on_query_and_headers() -> None:
    capture = make_capture(method="GET", query="a=1&b=2", request_headers=[("X-A", "1"), ("X-B", "2")])
    e = build(capture, allowlist=["A", "x-a"])
    # Unlisted keys are kept, their values replaced (as readme-metrics 3.4.0 does).
    assert e["request"]["queryString"] == [{"name": "a", "value": "1"}, {"name": "b", "value": "[REDACTED 1]"}]
    assert e["request"]["url"].endswith("/things?a=1&b=%5BREDACTED%201%5D")
    assert e["request"]["headers"] == [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "[REDACTED 1]"}]


def test_url_valued_headers_and_redirect_url_are_redacted() -> None:
    capture = make_capture(
        request_headers=[("Referer", "https://app.test/cb?code=ref-secret-1&state=s")],
        response_headers=[("Location", "https://app.test/done?access_token=loc-secret-2&x=1#frag")],
        status=302,
    )
    e = build(capture, denylist=["code", "access_token"])
    assert "ref-secret-1" not in json.dumps(e)
    assert "loc-secret-2" not in json.dumps(e)
    assert e["response"]["redirectURL"] == "https://app.test/done?access_token=%5BREDACTED%2012%5D&x=1#frag"


def test_non_ascii_keys_match_case_insensitively() -> None:
    body = json.dumps({"STRASSE": "geheim-1", "Éclair": "geheim-2", "ok": "yes"}).encode()
    capture = make_capture(request_headers=[("Content-Type", "application/json")], request_body=body)
    text = build(capture, denylist=["straße", "éCLAIR"])["request"]["postData"]["text"]
    assert json.loads(text) == {"STRASSE": "[REDACTED 8]", "Éclair": "[REDACTED 8]", "ok": "yes"}


# ======================================================================================
# The API key
# ======================================================================================


def test_api_key_never_appears(standin: MetricsStandIn, session: requests.Session) -> None:
    key = API_KEY
    capture = make_capture(
        query=f"k={key}",
        request_headers=[("X-Readme-Key", key), ("Authorization", f"Basic {key}"), ("Content-Type", "text/plain")],
        request_body=f"the key is {key}.".encode(),
        response_headers=[("Content-Type", "application/octet-stream")],
        response_body=b"\x00\xff" + key.encode() + b"\x00",
        group={"api_key": key, "label": f"label {key}", "email": f"{key}@example.test"},
    )
    arrived = deliver(standin, session, capture, config())
    assert key not in arrived
    log = json.loads(arrived)
    content = entry(log)["response"]["content"]
    assert content["encoding"] == "base64"
    assert key.encode() not in base64.b64decode(content["text"])
    assert log["group"]["id"] == mask(key)  # the grouping function's key is sent masked
    assert entry(log)["request"]["postData"]["text"] == f"the key is {REDACTED}."


def test_api_key_scrubbed_after_every_decoding() -> None:
    escaped = b'{"a": "\\u0074' + API_KEY[1:].encode() + b'"}'  # a JSON escape for the "t"
    assert API_KEY.encode() not in escaped
    cases = [
        make_capture(method="GET", query="k=%74" + API_KEY[1:]),  # percent-escaped
        make_capture(request_headers=[("Content-Type", "application/json")], request_body=escaped),
        make_capture(
            request_headers=[("Content-Type", "text/plain; charset=utf-16")], request_body=API_KEY.encode("utf-16")
        ),
        make_capture(
            request_headers=[("Content-Type", "text/plain"), ("Content-Encoding", "gzip")],
            request_body=gzip.compress(API_KEY.encode()),
        ),
    ]
    for capture in cases:
        body = encoded_batch(capture, config(denylist=["x"]))
        assert API_KEY.encode() not in body
        assert API_KEY not in json.dumps(json.loads(body), ensure_ascii=False)
    # Without it, the log itself holds the key: the scrub really is the worker's batch search.
    assert API_KEY in json.dumps(build(cases[0]))


@pytest.mark.parametrize(
    ("key", "key_in_header"),
    [(API_KEY, False), (API_KEY, True), ("late-base64", False)],
    ids=["bodies-only", "key-in-a-header", "key-in-the-token"],
)
def test_large_binary_bodies_encoded_late_are_the_same_log_without_the_key(key: str, key_in_header: bool) -> None:
    # The builder writes a large binary body's base64 straight into the encoded log
    # (splice_late): the log is the one built whole, the key scrubbed from the bytes
    # (before base64) as from everything else. When the log holds the key elsewhere, it
    # is scrubbed whole (fill_late first), even a key that the token itself contains.
    rng = random.Random(6)
    request_body = rng.randbytes(LATE_AT) + key.encode() + rng.randbytes(1000)
    response_body = rng.randbytes(3 * LATE_AT)
    made = [
        make_capture(
            request_headers=[("Content-Type", "application/octet-stream")]
            + ([("X-Echo", f"my key is {key}")] if key_in_header else []),
            request_body=request_body,
            response_headers=[("Content-Type", "image/png")],
            response_body=response_body,
        )
        for _ in range(2)
    ]
    made[0].log_id = "0f0e0d0c-0b0a-4908-8706-050403020100"
    for name in ("log_id", "started_at", "start_mono", "response_start_mono", "end_mono"):
        setattr(made[1], name, getattr(made[0], name))
    cfg = MetricsApiConfig(key, None, metrics_server="http://127.0.0.1:9")
    encoded = Client(cfg).builder.encode(made[0])
    assert key.encode() not in encoded
    late = json.loads(encoded)
    # Built whole: a mask hook (even one that changes nothing) sees every value, so no late body.
    whole = Builder(Client(cfg).builder.redactor, mask=lambda log: log).encode(made[1])
    assert late == json.loads(whole)
    sent = entry(late)["request"]
    assert sent["postData"]["encoding"] == "base64"
    assert base64.b64decode(sent["postData"]["text"]) == request_body.replace(key.encode(), REDACTED.encode())
    assert base64.b64decode(entry(late)["response"]["content"]["text"]) == response_body
    assert (f"my key is {REDACTED}" in json.dumps(sent["headers"])) is key_in_header


# ======================================================================================
# JSON bodies
# ======================================================================================
# ======================================================================================
# JSON bodies
# ======================================================================================


def _json_capture(doc: Any, content_type: str = "application/json", *, response: bool = False) -> Capture:
    body = json.dumps(doc).encode()
    if response:
        return make_capture(response_headers=[("Content-Type", content_type)], response_body=body)
    return make_capture(request_headers=[("Content-Type", content_type)], request_body=body)


def test_json_every_depth_every_type_requests_and_responses() -> None:
    doc = {
        "user": {"name": "ann", "Password": "pw-1", "cards": [{"number": 4111, "cvv": "123"}, {"NUMBER": [1, 2]}]},
        "items": [[{"password": {"nested": True}}]],
        "number": None,
        "flag": True,
    }
    expected = {
        "user": {
            "name": "ann",
            "Password": "[REDACTED 4]",
            "cards": [{"number": "[REDACTED]", "cvv": "123"}, {"NUMBER": "[REDACTED]"}],
        },
        "items": [[{"password": "[REDACTED]"}]],
        "number": "[REDACTED]",
        "flag": True,
    }
    for content_type in ("application/json", "application/vnd.api+json; charset=utf-8", "text/json"):
        e = build(_json_capture(doc, content_type), denylist=["password", "Number"])
        assert json.loads(e["request"]["postData"]["text"]) == expected
        e = build(_json_capture(doc, content_type, response=True), denylist=["password", "Number"])
        assert json.loads(e["response"]["content"]["text"]) == expected


def test_allowlist_every_depth_and_denylist_wins() -> None:
    doc = {"user": {"name": "ann", "email": "a@x", "pw": "p"}, "list": [{"name": "b", "x": 1}], "other": 1}
    e = build(_json_capture(doc), allowlist=["USER", "name", "list", "pw"], denylist=["pw"])
    assert json.loads(e["request"]["postData"]["text"]) == {
        "user": {"name": "ann", "email": "[REDACTED 3]", "pw": "[REDACTED 1]"},
        "list": [{"name": "b", "x": "[REDACTED]"}],
        "other": "[REDACTED]",
    }


def test_json_without_lists_is_sent_as_written() -> None:
    body = b'{ "a" : 1,\n "password": "x" }'
    capture = make_capture(request_headers=[("Content-Type", "application/json")], request_body=body)
    assert build(capture)["request"]["postData"]["text"] == body.decode()
    # With a denylist that cannot match, the text is validated but kept as written.
    assert build(capture, denylist=["token"])["request"]["postData"]["text"] == body.decode()


def test_text_that_is_json_is_redacted_too() -> None:
    capture = make_capture(
        request_headers=[("Content-Type", "text/plain")], request_body=b'[{"token": "undeclared-1"}]'
    )
    assert build(capture, denylist=["token"])["request"]["postData"]["text"] == '[{"token":"[REDACTED 12]"}]'


@pytest.mark.parametrize(
    ("body", "content_type", "limit", "marker"),
    [
        (b'{"password": "s3cr3t-value", ', "application/json", 1 << 20, UNPARSABLE),
        (b'{"password": "s3cr3t-value"}' + b" " * 100, "application/json", 20, TRUNCATED),
        (b'{"password": "s3cr3t-value\xff"}', "application/json", 1 << 20, UNPARSABLE),
        # An unknown charset: the bytes are still read as JSON (UTF-8/16/32), so redacted.
        (b'{"password": "s3cr3t-value"}', "application/json; charset=nonexistent", 1 << 20, None),
        # Too deep to parse, and it holds a listed key: never sent unjudged. (A text in
        # which no listed key occurs is sent as written, parsed or not: see below.)
        (
            b"[" * 100_000 + b'{"password": "s3cr3t-value"}' + b"]" * 100_000,
            "application/problem+json",
            1 << 20,
            UNPARSABLE,
        ),
        # A form the frameworks read differently (werkzeug as UTF-8, Django as UTF-16).
        (b"password=s3cr3t-valu", "application/x-www-form-urlencoded; charset=utf-16", 1 << 20, UNPARSABLE),
    ],
)
def test_fail_closed(body: bytes, content_type: str, limit: int, marker: str | None) -> None:
    for side in ("request", "response"):
        headers = [("Content-Type", content_type)]
        if side == "request":
            capture = make_capture(request_headers=headers, request_body=body, limit=limit)
            field = build(capture, denylist=["password"])["request"]["postData"]
        else:
            capture = make_capture(response_headers=headers, response_body=body, limit=limit)
            field = build(capture, denylist=["password"])["response"]["content"]
        if marker is None:
            assert json.loads(field["text"]) == {"password": "[REDACTED 12]"}
        else:
            assert field["text"] == marker
        assert "encoding" not in field
        assert "s3cr3t" not in json.dumps(field)


def test_a_body_that_cannot_hold_a_listed_key_is_sent_as_written_unparsed() -> None:
    # No listed key occurs in it (case-insensitive, ASCII, no escapes): nothing to redact,
    # so it is neither parsed nor re-encoded, even when it does not parse.
    for body in (b'{"a": ', b"[" * 100_000 + b"]" * 100_000, b'{"user": {"name": "Ada"}}'):
        capture = make_capture(request_headers=[("Content-Type", "application/json")], request_body=body)
        assert build(capture, denylist=["password"])["request"]["postData"]["text"] == body.decode()
    # An escape or a non-ASCII character could spell a listed key: those are parsed.
    for body in (b'{"p\\u0061ssword": "s3cr3t-value"}', '{"PASSWORD": "s3cr3t-value", "x": "ß"}'.encode()):
        capture = make_capture(request_headers=[("Content-Type", "application/json")], request_body=body)
        text = build(capture, denylist=["password"])["request"]["postData"]["text"]
        assert "s3cr3t" not in text and "REDACTED 12" in text


def test_unparsable_without_lists_is_sent_as_is() -> None:
    capture = make_capture(request_headers=[("Content-Type", "application/json")], request_body=b'{"a": ')
    assert build(capture)["request"]["postData"]["text"] == '{"a": '


# ======================================================================================
# Forms and multipart
# ======================================================================================


def test_urlencoded_form_request_and_response() -> None:
    body = b"user=ann&PASSWORD=form-secret-1&empty="
    capture = make_capture(
        request_headers=[("Content-Type", "application/x-www-form-urlencoded")],
        request_body=body,
        response_headers=[("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
        response_body=body,
    )
    e = build(capture, denylist=["password"])
    assert e["request"]["postData"]["params"] == [
        {"name": "user", "value": "ann"},
        {"name": "PASSWORD", "value": "[REDACTED 13]"},
        {"name": "empty", "value": ""},
    ]
    assert "text" not in e["request"]["postData"]
    assert e["response"]["content"]["text"] == "user=ann&PASSWORD=%5BREDACTED%2013%5D&empty="


def test_json_inside_form_fields_and_query_parameters() -> None:
    doc = json.dumps({"user": {"token": "nested-secret-1"}})
    capture = make_capture(
        query=urlencode({"filter": doc}),
        request_headers=[("Content-Type", "application/x-www-form-urlencoded")],
        request_body=urlencode({"data": doc}).encode(),
    )
    e = build(capture, denylist=["token"])
    assert "nested-secret-1" not in json.dumps(e)
    assert json.loads(e["request"]["postData"]["params"][0]["value"]) == {"user": {"token": "[REDACTED 15]"}}


def test_truncated_form_is_parsed_pair_by_pair() -> None:
    body = b"a=1&password=form-secret-long&b=" + b"x" * 100
    capture = make_capture(
        request_headers=[("Content-Type", "application/x-www-form-urlencoded")], request_body=body, limit=40
    )
    post = build(capture, denylist=["password"])["request"]["postData"]
    assert post["_truncated"] is True
    assert post["params"] == [{"name": "a", "value": "1"}, {"name": "password", "value": "[REDACTED 16]"}]


def _multipart(boundary: str, *parts: tuple[str, str | None, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, content_type, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_fields_and_files() -> None:
    body = _multipart(
        "XyZ",
        ("note", None, None, b"hello"),
        ("Secret", None, None, b"mp-secret-1"),
        ("upload", "photo.png", "image/png", b"\x89PNG file content"),
        ("doc", "notes.txt", "text/plain", b"file-secret-text"),
    )
    capture = make_capture(request_headers=[("Content-Type", "multipart/form-data; boundary=XyZ")], request_body=body)
    for options in ({}, {"denylist": ["secret"]}):
        post = build(capture, **options)["request"]["postData"]
        assert "text" not in post
        params = post["params"]
        assert params[0] == {"name": "note", "value": "hello"}
        assert params[2] == {
            "name": "upload",
            "value": "",
            "_size": 17,
            "fileName": "photo.png",
            "contentType": "image/png",
        }
        assert params[3] == {
            "name": "doc",
            "value": "",
            "_size": 16,
            "fileName": "notes.txt",
            "contentType": "text/plain",
        }
        assert "file-secret-text" not in json.dumps(post)
    assert params[1] == {"name": "Secret", "value": "[REDACTED 11]"}
    post = build(capture, allowlist=["note", "doc"])["request"]["postData"]
    assert [p["name"] for p in post["params"]] == ["note", "Secret", "upload", "doc"]
    assert post["params"][1:3] == [{"name": "Secret", "value": "[REDACTED 11]"}, {"name": "upload", "value": REDACTED}]


def test_multipart_json_fields_are_redacted_as_json() -> None:
    body = _multipart(
        "XyZ",
        ("meta", None, "application/json", b'{"user": {"token": "mp-json-secret-1"}}'),
        ("undeclared", None, None, b'[{"token": "mp-json-secret-2"}]'),
        ("broken", None, "application/json", b'{"token": "mp-json-secret-3"'),
    )
    capture = make_capture(request_headers=[("Content-Type", "multipart/form-data; boundary=XyZ")], request_body=body)
    params = build(capture, denylist=["token"])["request"]["postData"]["params"]
    assert json.loads(params[0]["value"]) == {"user": {"token": "[REDACTED 16]"}}
    assert json.loads(params[1]["value"]) == [{"token": "[REDACTED 16]"}]
    assert params[2]["value"] == UNPARSABLE


def test_multipart_delimiter_inside_content_cannot_fake_a_part() -> None:
    fake = b'x--XyZ\r\nContent-Disposition: form-data; name="harmless"\r\n\r\nmp-secret-2'
    body = _multipart("XyZ", ("password", None, None, fake))
    capture = make_capture(request_headers=[("Content-Type", "multipart/form-data; boundary=XyZ")], request_body=body)
    post = build(capture, denylist=["password"])["request"]["postData"]
    assert [p["name"] for p in post["params"]] == ["password"]
    assert "mp-secret-2" not in json.dumps(post)


def test_multipart_truncated_and_broken() -> None:
    body = _multipart("XyZ", ("a", None, None, b"1"), ("password", None, None, b"mp-secret-3" * 10))
    capture = make_capture(
        request_headers=[("Content-Type", "multipart/form-data; boundary=XyZ")], request_body=body, limit=len(body) - 60
    )
    post = build(capture, denylist=["password"])["request"]["postData"]
    assert post["_truncated"] is True
    assert post["params"][0] == {"name": "a", "value": "1"}
    assert post["params"][1]["value"].startswith("[REDACTED ")
    # No boundary, or not multipart at all: an opaque marker, never the raw text.
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=Other"):
        capture = make_capture(request_headers=[("Content-Type", content_type)], request_body=body)
        assert build(capture)["request"]["postData"]["text"] == MULTIPART
    capture = make_capture(response_headers=[("Content-Type", "multipart/mixed; boundary=XyZ")], response_body=body)
    assert build(capture)["response"]["content"]["text"] == MULTIPART


# ======================================================================================
# Compressed bodies
# ======================================================================================


def test_gzip_and_deflate_bodies_are_decoded_and_redacted() -> None:
    doc = json.dumps({"token": "gz-secret-1", "ok": 1}).encode()
    raw_deflate = zlib.compressobj(wbits=-15)
    raw = raw_deflate.compress(doc) + raw_deflate.flush()
    for coding, data in (
        ("gzip", gzip.compress(doc)),
        ("x-gzip", gzip.compress(doc)),
        ("deflate", zlib.compress(doc)),
        ("Deflate", raw),
        ("deflate, gzip", gzip.compress(zlib.compress(doc))),
    ):
        capture = make_capture(
            response_headers=[("Content-Type", "application/json"), ("Content-Encoding", coding)], response_body=data
        )
        content = build(capture, denylist=["token"])["response"]["content"]
        assert json.loads(content["text"]) == {"token": "[REDACTED 11]", "ok": 1}, coding
        assert content["_decodedSize"] == len(doc)


def test_unknown_or_broken_encodings_are_opaque() -> None:
    for coding, data in (("br", b"\x1b\x00\x00brotli"), ("zstd", b"(\xb5/\xfd"), ("gzip", b"not gzip at all")):
        capture = make_capture(
            request_headers=[("Content-Type", "application/json"), ("Content-Encoding", coding)], request_body=data
        )
        post = build(capture)["request"]["postData"]
        assert post["text"] == ENCODED.format(coding=coding)
        assert "encoding" not in post


def _gzip_bomb() -> tuple[bytes, int]:
    """``Content-Encoding: gzip, gzip`` data of ~1 KB that would inflate to 1 GiB."""
    member = gzip.compress(b"\0" * (1 << 20), compresslevel=9)  # 1 MiB -> ~1 KB
    inner = member * 1024  # 1024 gzip members: 1 GiB once inflated, ~1 MB
    return gzip.compress(inner, compresslevel=9), 1024 * (1 << 20)


def test_decompression_bound_holds_for_a_gzip_bomb() -> None:
    bomb, would_be = _gzip_bomb()
    assert len(bomb) < 8 * 1024
    limit = 64 * 1024
    data, cut = decompress(bomb, "gzip, gzip", limit)
    assert cut is True
    assert len(data) == limit
    assert would_be > 10_000 * limit
    capture = make_capture(
        request_headers=[("Content-Type", "text/plain"), ("Content-Encoding", "gzip, gzip")],
        request_body=bomb,
        limit=limit,
    )
    post = build(capture, max_body_bytes=limit)["request"]["postData"]
    assert post["_truncated"] is True
    assert len(post["text"]) <= limit
    # One layer of it (1024 gzip members one after the other): the bound holds across members.
    inner = gzip.decompress(bomb)
    data, cut = decompress(inner, "gzip", limit)
    assert cut is True
    assert data == b"\0" * limit


# ======================================================================================
# Regressions: leaks and gaps found in review
# ======================================================================================

MULTIPART_XYZ = [("Content-Type", "multipart/form-data; boundary=XyZ")]


@pytest.mark.parametrize("nl", [b"\r\n", b"\n"])
def test_multipart_boundary_prefix_in_content_is_not_a_delimiter(nl: bytes) -> None:
    # "--XyZabc" starts with the delimiter but is not one (RFC 2046: only "--" or blanks
    # then the end of the line may follow): it stays the password field's content.
    fake = b"x" + nl + b"--XyZabc" + nl + b'Content-Disposition: form-data; name="harmless"' + nl + nl + b"mp-SECRET-2"
    head = b"--XyZ" + nl + b'Content-Disposition: form-data; name="password"' + nl + nl
    body = head + fake + nl + b"--XyZ \t" + nl + b'Content-Disposition: form-data; name="next"' + nl + nl + b"ok"
    body += nl + b"--XyZ--" + nl
    capture = make_capture(request_headers=MULTIPART_XYZ, request_body=body)
    post = build(capture, denylist=["password"])["request"]["postData"]
    assert post["params"] == [
        {"name": "password", "value": redacted(fake.decode())},
        {"name": "next", "value": "ok"},  # blanks after the boundary: still a delimiter
    ]
    assert "mp-SECRET-2" not in json.dumps(post)


def test_url_fragment_pairs_are_redacted_without_a_query() -> None:
    capture = make_capture(
        request_headers=[("Referer", "https://app.test/#/cb?token=FRAG-SECRET-3&x=1")],
        response_headers=[("Location", "https://app/cb#access_token=FRAG-SECRET-1&state=1")],
        status=302,
    )
    e = build(capture, denylist=["access_token", "token"])
    assert "FRAG-SECRET" not in json.dumps(e)
    assert e["response"]["redirectURL"] == "https://app/cb#access_token=%5BREDACTED%2013%5D&state=1"
    assert header_value(e["request"]["headers"], "referer") == "https://app.test/#%2Fcb=&token=%5BREDACTED%2013%5D&x=1"
    e = build(capture, allowlist=["location", "state"])
    assert e["response"]["redirectURL"] == "https://app/cb#access_token=%5BREDACTED%2013%5D&state=1"
    # A fragment without pairs is kept; without lists the URL is untouched.
    assert Redactor(["a"]).url("https://app/x#section-2") == "https://app/x#section-2"
    assert build(capture)["response"]["redirectURL"] == "https://app/cb#access_token=FRAG-SECRET-1&state=1"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
def test_truncated_undeclared_json_body_is_not_sent(content_type: str | None) -> None:
    doc = json.dumps({"token": "TRUNC-SECRET", "pad": "x" * 200}).encode()
    headers = [("Content-Type", content_type)] if content_type else []
    capture = make_capture(request_headers=headers, request_body=doc, limit=100)
    post = build(capture, denylist=["token"])["request"]["postData"]
    assert post["text"] == TRUNCATED
    assert post["_truncated"] is True
    # Without lists the cut body is sent as it is (nothing was asked to be hidden).
    post = build(capture)["request"]["postData"]
    sent = base64.b64decode(post["text"]) if post.get("encoding") == "base64" else post["text"].encode()
    assert b"TRUNC-SECRET" in sent


def test_truncated_undeclared_json_multipart_field_is_not_sent() -> None:
    body = _multipart(
        "XyZ", ("a", None, None, b"1"), ("meta", None, None, b'{"token":"MP-TRUNC-SECRET","pad":"' + b"x" * 200 + b'"}')
    )
    capture = make_capture(request_headers=MULTIPART_XYZ, request_body=body, limit=150)
    post = build(capture, denylist=["token"])["request"]["postData"]
    assert post["params"] == [{"name": "a", "value": "1"}, {"name": "meta", "value": TRUNCATED}]
    # The same field complete is redacted as JSON.
    capture = make_capture(request_headers=MULTIPART_XYZ, request_body=body)
    params = build(capture, denylist=["token"])["request"]["postData"]["params"]
    assert json.loads(params[1]["value"])["token"] == "[REDACTED 15]"


def test_looks_json_is_one_rule_for_parameters_fields_and_bodies() -> None:
    for text in ('{"a":1}', '\n {"a":1}', "\t[1]", '\ufeff{"a":1}'):
        assert looks_json(text) and looks_json(text.encode())
    for text in ("", "  ", "a{", "x=[1]", "\x0b{}"):
        assert not looks_json(text) and not looks_json(text.encode())
    leading = '\n {"token":"WS-SECRET-1"}'
    capture = make_capture(
        method="GET",
        query="f=%0A%7B%22token%22%3A%22WS-SECRET-0%22%7D",
        request_headers=[("Content-Type", "application/x-www-form-urlencoded")],
        request_body=urlencode({"g": leading}).encode(),
        response_headers=[("Content-Type", "text/plain")],
        response_body=b'\xef\xbb\xbf\r\n{"token":"WS-SECRET-2"}',
    )
    e = build(capture, denylist=["token"])
    assert "WS-SECRET" not in json.dumps(e)
    assert e["request"]["queryString"] == [{"name": "f", "value": '{"token":"[REDACTED 11]"}'}]
    assert e["request"]["postData"]["params"] == [{"name": "g", "value": '{"token":"[REDACTED 11]"}'}]
    assert json.loads(e["response"]["content"]["text"]) == {"token": "[REDACTED 11]"}
    mp = _multipart("XyZ", ("m", None, None, leading.encode()))
    capture = make_capture(request_headers=MULTIPART_XYZ, request_body=mp)
    assert (
        build(capture, denylist=["token"])["request"]["postData"]["params"][0]["value"] == '{"token":"[REDACTED 11]"}'
    )


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/x-json", "application/x-ndjson"])
def test_json_under_a_binary_media_type_is_redacted(content_type: str) -> None:
    capture = make_capture(request_headers=[("Content-Type", content_type)], request_body=b'{"token":"OCTET-SECRET"}')
    post = build(capture, denylist=["token"])["request"]["postData"]
    assert json.loads(post["text"]) == {"token": "[REDACTED 12]"}
    assert "encoding" not in post
    # Looks like JSON but does not parse (NDJSON, broken): a marker, not base64 of it.
    capture = make_capture(
        request_headers=[("Content-Type", content_type)], request_body=b'{"token":"OCTET-SECRET"}\n{"a":1}\n'
    )
    assert build(capture, denylist=["token"])["request"]["postData"]["text"] == UNPARSABLE
    # Real binary stays base64; without lists, everything does.
    capture = make_capture(request_headers=[("Content-Type", content_type)], request_body=b"\x89PNG\x00{")
    assert build(capture, denylist=["token"])["request"]["postData"]["encoding"] == "base64"
    capture = make_capture(request_headers=[("Content-Type", content_type)], request_body=b'{"token":"OCTET-SECRET"}')
    assert build(capture)["request"]["postData"]["encoding"] == "base64"


def test_every_content_encoding_header_counts() -> None:
    doc = b'{"token":"GZ-SECRET"}'
    for headers in (
        [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
        [("Content-Encoding", "gzip"), ("Content-Encoding", "identity")],
        [("content-encoding", "deflate"), ("Content-Encoding", "gzip")],
    ):
        data = gzip.compress(zlib.compress(doc) if headers[0][1] == "deflate" else doc)
        capture = make_capture(
            request_headers=[("Content-Type", "text/plain; charset=latin-1"), *headers], request_body=data
        )
        post = build(capture, denylist=["token"])["request"]["postData"]
        assert json.loads(post["text"]) == {"token": "[REDACTED 9]"}, headers
        assert post["_decodedSize"] == len(doc)


def test_cookie_without_equals_sign() -> None:
    capture = make_capture(request_headers=[("Cookie", "token; a=1; sid=s-1")])
    e = build(capture, send_cookies=True, denylist=["token", "sid"])
    assert header_value(e["request"]["headers"], "cookie") == "token=[REDACTED 0]; a=1; sid=[REDACTED 3]"
    e = build(capture, send_cookies=True, allowlist=["cookie", "a"])
    assert header_value(e["request"]["headers"], "cookie") == "token=[REDACTED 0]; a=1; sid=[REDACTED 3]"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/xml", b"<a><password>XML-SECRET</password></a>"),
        ("text/plain", b"password is XML-SECRET"),
        ("application/octet-stream", b"\x00XML-SECRET"),
        (None, b"XML-SECRET free text"),
        ("application/json", b'"XML-SECRET"'),  # a bare JSON scalar: under no key
        ("text/plain", b'{"id": "XML-SECRET" broken'),  # looks like JSON, does not parse
    ],
)
def test_allowlist_omits_bodies_that_cannot_be_judged_key_by_key(content_type: str | None, body: bytes) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    capture = make_capture(request_headers=headers, request_body=body, response_headers=headers, response_body=body)
    e = build(capture, allowlist=["id"])
    # Free text has one marker, even when it merely starts with "{" (issue 20).
    expected = NOT_STRUCTURED
    assert e["request"]["postData"]["text"] == expected
    assert e["response"]["content"]["text"] == expected
    assert "XML-SECRET" not in json.dumps(e)
    # A denylist alone keeps free text (documented: it cannot be judged, nothing unlisted
    # is promised removed).
    if content_type in ("application/xml", "text/plain") and not body.startswith(b"{"):
        assert "XML-SECRET" in build(capture, denylist=["password"])["request"]["postData"]["text"]


def test_allowlist_replaces_scalars_under_no_key_in_a_body() -> None:
    body = json.dumps([{"id": 1, "pw": "x"}, "ARRAY-SECRET", [2, {"id": 3}]]).encode()
    capture = make_capture(request_headers=[("Content-Type", "application/json")], request_body=body)
    assert json.loads(build(capture, allowlist=["id"])["request"]["postData"]["text"]) == [
        {"id": 1, "pw": "[REDACTED 1]"},
        "[REDACTED 12]",
        ["[REDACTED]", {"id": 3}],
    ]
    # In a parameter the array is under the parameter's name: kept when that name is listed.
    capture = make_capture(method="GET", query=urlencode({"ids": '["a", {"id": 1, "x": 2}]'}))
    assert build(capture, allowlist=["ids", "id"])["request"]["queryString"] == [
        {"name": "ids", "value": '["a",{"id":1,"x":"[REDACTED]"}]'}
    ]


def test_json_that_cannot_match_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class CountingJson:
        dumps = staticmethod(json.dumps)

        @staticmethod
        def loads(text: Any, **kwargs: Any) -> Any:
            calls.append(type(text).__name__)
            return json.loads(text, **kwargs)

    monkeypatch.setattr(redaction, "json", CountingJson)
    r = Redactor(["token"])
    assert r.json_text('{"a": 1}') == '{"a": 1}'
    assert r.json_text("{not json") == "{not json"
    assert calls == []  # nothing to redact: sent as written, parsed or not
    assert r.json_text('{"token": 1}') == '{"token":"[REDACTED]"}'
    assert r.json_text('{"token": ') is None  # a listed key in what does not parse: fails closed
    assert len(calls) == 2


# ======================================================================================
# log_body, the mask hook, the error comment
# ======================================================================================


def test_log_body_false_sends_no_bodies() -> None:
    capture = make_capture(
        request_headers=[("Content-Type", "application/json")],
        request_body=b'{"a": "body-1"}',
        response_headers=[("Content-Type", "application/json")],
        response_body=b'{"b": "body-2"}',
    )
    e = build(capture, log_body=False)
    assert "postData" not in e["request"]
    assert e["response"]["content"]["text"] == ""
    assert e["request"]["bodySize"] == len(b'{"a": "body-1"}')
    assert "body-" not in json.dumps(e)


@pytest.fixture()
def mask_api(monkeypatch: pytest.MonkeyPatch, standin: MetricsStandIn) -> MetricsStandIn:
    monkeypatch.delenv("README_METRICS_SERVER", raising=False)
    return standin


def _run_client(api: MetricsStandIn, capture: Capture, **options: Any) -> Client:
    client = Client(config(metrics_server=api.url, flush_interval=0.01, **options))
    client.submit(capture)
    assert client.flush(10)
    client.close(5)
    return client


def test_mask_hook_runs_after_redaction(mask_api: MetricsStandIn) -> None:
    seen: list[str] = []

    def hook(log: dict[str, Any]) -> dict[str, Any]:
        seen.append(json.dumps(log))
        entry(log)["request"]["headers"].append({"name": "X-Masked", "value": "by-hook"})
        return log

    capture = make_capture(request_headers=[("X-Token", "hook-secret-1"), ("X-Id", "mask-run-1")])
    client = _run_client(mask_api, capture, denylist=["x-token"], mask=hook)
    assert "hook-secret-1" not in seen[0]
    logs = mask_api.wait_for(lambda log: header_value(entry(log)["request"]["headers"], "X-Id") == "mask-run-1")
    assert header_value(entry(logs[0])["request"]["headers"], "X-Masked") == "by-hook"
    assert client.stats()["sent"] == 1


@pytest.mark.parametrize("outcome", ["raise", "not-a-dict"])
def test_mask_hook_failure_drops_and_counts(mask_api: MetricsStandIn, outcome: str) -> None:
    def hook(log: dict[str, Any]) -> Any:
        if outcome == "raise":
            raise RuntimeError("mask failed")
        return "oops"

    marker = f"mask-fail-{outcome}"
    capture = make_capture(request_headers=[("X-Id", marker)])
    client = _run_client(mask_api, capture, mask_event=hook)
    stats = client.stats()
    assert stats["dropped"].get("mask_error") == 1
    assert stats["sent"] == 0
    assert not mask_api.matching(lambda log: header_value(entry(log)["request"]["headers"], "X-Id") == marker)


def test_error_comment_keeps_only_the_type_with_lists() -> None:
    capture = make_capture()
    capture.error = "ValueError: bad password hunter2"
    assert build(capture, denylist=["password"])["comment"] == "the app raised ValueError"
    assert build(capture)["comment"] == "the app raised ValueError: bad password hunter2"


# ======================================================================================
# Filters (request path)
# ======================================================================================


def test_allowed_http_hosts() -> None:
    hooks = Hooks(config(allowed_http_hosts=["api.example.com", "*.example.org", "local.test:8080"]))

    def allows(host: str, headers: list[tuple[str, str]] | None = None) -> bool:
        return hooks.allows("GET", host, "/", headers or [])

    assert allows("api.example.com")
    assert allows("API.Example.com:443")
    assert allows("a.example.org") and allows("a.b.example.org:8000")
    assert not allows("example.org")  # the wildcard is for subdomains
    assert not allows("evil-example.org") and not allows("api.example.com.evil.test")
    assert allows("local.test:8080") and not allows("local.test:8081") and not allows("local.test")
    assert allows("api.example.com.") and allows("a.example.org.:80") and allows("local.test.:8080")
    # X-Forwarded-Host only when the proxy is trusted.
    assert not allows("internal:8000", [("X-Forwarded-Host", "api.example.com")])
    trusted = Hooks(config(allowed_http_hosts=["api.example.com"], trust_forwarded_headers=True))
    assert trusted.allows("GET", "internal:8000", "/", [("x-forwarded-host", "api.example.com, proxy")])
    assert not trusted.allows("GET", "api.example.com", "/", [("X-Forwarded-Host", "other.test")])


def test_options_exclude_paths_and_skip() -> None:
    hooks = Hooks(config(exclude_paths=["/health", "/static/*"]))
    assert not hooks.allows("OPTIONS", "h", "/x", [])
    assert hooks.allows("GET", "h", "/x", [])
    assert not hooks.allows("GET", "h", "/health", [])
    assert hooks.allows("GET", "h", "/healthz", [])
    assert not hooks.allows("GET", "h", "/static/css/app.css", [])
    assert Hooks(config(log_options_requests=True)).allows("OPTIONS", "h", "/x", [])

    def skip(request: Any) -> bool:
        if request == "boom":
            raise RuntimeError("skip failed")
        return bool(request == "skip-me")

    hooks = Hooks(config(skip=skip))
    assert hooks.skipped("skip-me")
    assert not hooks.skipped("keep-me")
    assert not hooks.skipped("boom")  # a hook that raises does not skip
