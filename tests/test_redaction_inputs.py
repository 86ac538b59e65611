"""Redaction against inputs an attacker chooses (issue 15), and the 3.4.0 allowlist (issue 20).

Each class of input is generated (Hypothesis) or tabled, and the log is built by a real
:class:`~readme_metrics.delivery.Client`'s builder, exactly as its worker does (build, encode,
API key scrub); what is checked is the JSON that would be posted.

- No input makes a log disappear (lone surrogates anywhere): the log is sent, repaired.
- ``Authorization``: a user name at most, never any part of a password; hashes keyed.
- The API key cut at ``max_body_bytes``: no prefix of it leaves.
- Keys the denylist did not see: bracketed form keys, JSON in JSON strings, JSON sent as a
  form, JSON lines in free text.
- Parser differentials: multipart and forms read as the frameworks read them.
- A fragment in the request target.
- The allowlist keeps keys and replaces values (as readme-metrics 3.4.0).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import string
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.formparser import parse_form_data

from readme_metrics import MetricsApiConfig
from readme_metrics.build.bodies import NOT_STRUCTURED, UNPARSABLE
from readme_metrics.build.redaction import Redactor
from readme_metrics.build.secrets import MIN_PREFIX
from readme_metrics.capture import Capture
from readme_metrics.delivery import Client
from readme_metrics.exporters import MemoryExporter
from tests.standin import entry, header_value
from tests.test_redaction import make_capture

#: Holds "_": generated text (letters and digits) can never hold a piece of it by chance.
API_KEY = "rm_K3ySecretValue_9f8e7d6c5b4a3"
ALNUM = string.ascii_letters + string.digits
DENY = ["password", "token", "secret"]

_clients: dict[str, Client] = {}


def client(lists: str = "deny", **options: Any) -> Client:
    """A client (no worker thread is started: captures are encoded directly)."""
    name = lists + repr(sorted(options.items()))
    if name not in _clients:
        if lists == "deny":
            options.setdefault("denylist", DENY)
        elif lists == "allow":
            options.setdefault("allowlist", ["id", "name", "ok", "content-type"])
        config = MetricsApiConfig(
            API_KEY, None, metrics_server="http://127.0.0.1:9", base_log_url="https://docs.example.test", **options
        )
        _clients[name] = Client(config, exporter=MemoryExporter())
    return _clients[name]


def capture(
    *, headers: list[tuple[str, str]] | None = None, body: bytes = b"", content_type: str | None = None, **kw: Any
) -> Capture:
    """:func:`tests.test_redaction.make_capture`, with the request's content type apart."""
    headers = list(headers or [])
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return make_capture(request_headers=headers, request_body=body, **kw)


def sent(c: Capture, cl: Client | None = None) -> tuple[dict[str, Any], str]:
    """The log ``c`` becomes, as the worker would post it, and everything of it that leaves
    the process as text (the JSON, plus every base64 body decoded)."""
    cl = cl or client()
    before = dict(cl.stats()["dropped"])
    logs = cl._encode([c])
    assert cl.stats()["dropped"] == before, "the log was dropped"
    assert len(logs) == 1
    text = logs[0][0].decode("utf-8")  # strict: valid UTF-8
    log = json.loads(text)
    e = entry(log)
    out = text
    for part in (e["request"].get("postData", {}), e["response"]["content"]):
        if part.get("encoding") == "base64":
            out += base64.b64decode(part["text"]).decode("latin-1")
    return log, out


# ======================================================================================
# 1. No input makes a log disappear
# ======================================================================================

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d"])
#: Any text, lone surrogates included (``st.text`` over a union would filter them out).
wild = st.lists(st.one_of(SURROGATES, st.characters(exclude_categories=[])), max_size=10).map("".join)


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=250, deadline=None)
@given(data=st.data(), lists=st.sampled_from(["none", "deny", "allow"]))
def test_property_no_input_makes_a_log_disappear(data: st.DataObject, lists: str) -> None:
    key, value, other = data.draw(wild), data.draw(wild), data.draw(wild)
    kind = data.draw(st.sampled_from(["json", "json-raw", "form", "form-escaped", "utf-7", "multipart", "ndjson"]))
    if kind == "json":
        body, ctype = (
            json.dumps({key: value, "password": value, "list": [value, {other: value}]}).encode(),
            "application/json",
        )
    elif kind == "json-raw":
        body, ctype = _raw('{"' + key + '": "' + value + '"}'), "text/plain"
    elif kind == "form":
        body, ctype = _raw(f"{key}={value}&password={other}"), "application/x-www-form-urlencoded"
    elif kind == "form-escaped":
        escaped = quote(_raw(value), safe="")
        body, ctype = (
            f"{quote(_raw(key))}={escaped}&q={escaped}".encode(),
            "application/x-www-form-urlencoded; charset=utf-7",
        )
    elif kind == "utf-7":
        body, ctype = (key + value).encode("utf-7"), "text/plain; charset=utf-7"
    elif kind == "multipart":
        body = (
            _raw(
                f'--B\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
                f'--B\r\nContent-Disposition: form-data; name="j"\r\nContent-Type: application/json\r\n\r\n'
            )
            + json.dumps({key: value}).encode()
            + b"\r\n--B--\r\n"
        )
        ctype = "multipart/form-data; boundary=B"
    else:
        body, ctype = (json.dumps({"token": value}) + "\n" + json.dumps([key]) + "\n").encode(), "text/plain"
    query = data.draw(
        st.sampled_from([f"{key}={value}", "q=" + json.dumps({key: value}), quote(_raw(key)) + "=" + value, value])
    )
    c = capture(
        method=data.draw(st.sampled_from(["POST", "PUT"])),
        path="/" + data.draw(wild),
        query=query,
        headers=[(data.draw(wild), data.draw(wild)), ("Authorization", "Basic " + value), ("Cookie", f"{key}={value}")],
        body=body,
        content_type=ctype,
        limit=data.draw(st.sampled_from([1 << 20, max(1, len(body) // 2)])),
        response_headers=[(data.draw(wild), data.draw(wild)), ("Location", f"/x?{key}={value}#{other}={value}")],
        response_body=json.dumps([value, {key: other}]).encode(),
        group={"api_key": data.draw(wild) + "k", "label": data.draw(wild)},
    )
    c.error = data.draw(wild)
    log, _ = sent(c, client(lists, send_cookies=data.draw(st.booleans())))
    assert entry(log)["request"]["method"] in ("POST", "PUT")


@pytest.mark.parametrize(
    "c",
    [
        capture(body=b'{"password": "x", "name": "a\\ud800b"}', content_type="application/json"),
        capture(query='q={"name":"\\ud800"}'),
        capture(query="a=\ud800"),
        capture(body=b"+2AA-", content_type="text/plain; charset=utf-7"),
        capture(body=b"x", content_type="text/plain; charset=undefined"),
    ],
    ids=["json-escape", "json-in-query", "query", "utf-7", "charset-undefined"],
)
def test_a_lone_surrogate_is_replaced_marked_and_counted(c: Capture) -> None:
    cl = client("deny", flush_interval=0.5)  # a client of its own: its counter starts at 0
    repaired = cl.stats().get("repaired", 0)
    log, text = sent(c, cl)
    if "undefined" not in str(c.request_headers):
        assert "\ufffd" in text or "%EF%BF%BD" in text
        assert entry(log)["_repaired"] >= 1
        assert cl.stats()["repaired"] == repaired + 1


# ======================================================================================
# 2. Authorization
# ======================================================================================

password_text = st.text(ALNUM + "!#$%&*+-.^_~", min_size=6, max_size=24)
user_text = st.text(ALNUM + ".-@", min_size=1, max_size=16)


def _unkeyed_digests(value: str) -> list[str]:
    out = []
    for algorithm in ("sha256", "sha512", "sha1", "md5"):
        raw = hashlib.new(algorithm, value.encode()).digest()
        out += [
            raw.hex(),
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
        ]
    return out


@settings(max_examples=150, deadline=None)
@given(user=user_text, password=password_text, proxy=st.booleans())
def test_property_basic_shows_the_user_at_most_and_a_keyed_hash(user: str, password: str, proxy: bool) -> None:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    value = f"Basic {token}"
    name = "Proxy-Authorization" if proxy else "Authorization"
    log, text = sent(capture(headers=[(name, value)]), client("none"))
    shown = header_value(entry(log)["request"]["headers"], name)
    assert shown is not None
    rest = shown.replace(f'user="{user}"', "", 1)  # what is shown besides the user name
    assert password not in rest and token not in shown
    for size in range(4, len(token) + 1):  # no piece of the base64 text (it decodes to password bytes)
        assert token[-size:] not in shown.rpartition(" ")[2]
    for digest in _unkeyed_digests(value) + _unkeyed_digests(password) + _unkeyed_digests(f"{user}:{password}"):
        assert digest[:16] not in text  # no dictionary check from the logs alone
    assert shown.startswith(f'Basic user="{user}" hmac-sha256:')
    # Keyed by the API key: the same in every worker and restart of one configuration,
    # different under another key.
    assert Redactor(api_key=API_KEY).credential(value) == shown
    assert Redactor(api_key=API_KEY + "x").credential(value) != shown


@pytest.mark.parametrize(
    ("value", "expected", "hidden"),
    [
        ("Bearer tok-9f8e7d6c5b4a", "Bearer hmac-sha256:", ["9f8e", "tok-"]),
        ("Basic " + base64.b64encode(b"rdme_apikey123456:").decode(), "Basic hmac-sha256:", ["rdme", "NDU2"]),
        ("Basic not-base64!", "Basic hmac-sha256:", ["base64"]),
        (
            'Digest username="ann", realm="api", nonce="dcd98b7102dd2f0e", uri="/x", '
            'response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b"',
            'Digest user="ann" hmac-sha256:',
            ["6629", "dcd98b", "0a4f", "realm"],
        ),
        ("Token abcdef0123456789", "Token hmac-sha256:", ["abcdef", "6789"]),
        ("bare-credential-0123456789", "hmac-sha256:", ["bare", "6789"]),
        ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2026", "AWS4-HMAC-SHA256 hmac-sha256:", ["AKID"]),
    ],
)
def test_what_each_scheme_shows(value: str, expected: str, hidden: list[str]) -> None:
    shown = Redactor(api_key=API_KEY).credential(value)
    assert shown.startswith(expected) and len(shown) == len(expected) + 22
    for piece in hidden:
        assert piece not in shown


# ======================================================================================
# 3. The API key at the cut
# ======================================================================================


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(ALNUM + " \n", max_size=40),
    cut=st.integers(1, len(API_KEY) - 1),
    kind=st.sampled_from(["text", "binary", "none", "form", "multipart", "gzip"]),
    lists=st.sampled_from(["none", "deny"]),
)
def test_property_no_prefix_of_the_api_key_at_a_cut(before: str, cut: int, kind: str, lists: str) -> None:
    body = (before + API_KEY + "-tail and more").encode()
    ctype: str | None = {"text": "text/plain", "binary": "application/octet-stream", "none": None}.get(kind)
    head = b""
    options: dict[str, Any] = {}
    if kind == "form":
        head, ctype = b"note=", "application/x-www-form-urlencoded"
    elif kind == "multipart":
        head, ctype = b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\n', "multipart/form-data; boundary=B"
    elif kind == "gzip":
        options["max_body_bytes"] = len(before.encode()) + cut  # the decoded text is cut there
        c = capture(body=gzip.compress(body), headers=[("Content-Encoding", "gzip")], content_type="text/plain")
    if kind != "gzip":
        c = capture(body=head + body, content_type=ctype, limit=len(head) + len(before.encode()) + cut)
    _, text = sent(c, client(lists, **options))
    assert API_KEY[:MIN_PREFIX] not in text


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(MIN_PREFIX, len(API_KEY) - 1), lists=st.sampled_from(["none", "deny"]))
def test_property_no_prefix_of_the_api_key_in_a_cut_error_message(cut: int, lists: str) -> None:
    c = capture(method="GET")
    c.finish(False, RuntimeError("x" * (500 - len("RuntimeError: ") - cut) + API_KEY))  # cut at 500
    _, text = sent(c, client(lists))
    assert API_KEY[:MIN_PREFIX] not in text


# ======================================================================================
# 4. Keys the denylist does not see
# ======================================================================================

SHAPES = ["{k}", "user[{k}]", "{k}[]", "a[b][{k}]", "{k}[0][x]", "data[{k}][]"]


@settings(max_examples=150, deadline=None)
@given(
    shape=st.sampled_from(SHAPES),
    key=st.sampled_from(DENY),
    upper=st.booleans(),
    secret=st.text(ALNUM, min_size=12, max_size=12).map(lambda s: "S3CR" + s),
    place=st.sampled_from(["query", "form", "multipart", "cookie"]),
)
def test_property_bracketed_names_are_judged_by_each_key(
    shape: str, key: str, upper: bool, secret: str, place: str
) -> None:
    name = shape.format(k=key.upper() if upper else key)
    encoded = quote(name, safe="[]")
    if place == "query":
        c = capture(method="GET", query=f"page=1&{encoded}={secret}")
    elif place == "form":
        c = capture(body=f"page=1&{encoded}={secret}".encode(), content_type="application/x-www-form-urlencoded")
    elif place == "multipart":
        body = f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{secret}\r\n--B--\r\n'.encode()
        c = capture(body=body, content_type="multipart/form-data; boundary=B")
    else:
        c = capture(headers=[("Cookie", f"a=1; {name}={secret}")])
    _, text = sent(c, client("deny", send_cookies=True))
    assert secret not in text


def test_json_inside_json_strings_is_judged_by_its_keys() -> None:
    inner = json.dumps({"user": {"password": "S3CR-inner-1"}, "ok": 1})
    twice = json.dumps({"token": "S3CR-inner-2", "more": json.dumps([{"secret": "S3CR-inner-3"}])})
    doc = {"data": inner, "list": [twice, "plain"], "name": "visible"}
    log, text = sent(capture(body=json.dumps(doc).encode(), content_type="application/json"))
    assert "S3CR" not in text
    out = json.loads(entry(log)["request"]["postData"]["text"])
    assert out["name"] == "visible" and json.loads(out["data"])["ok"] == 1
    # A JSON text whose only content is a string holding JSON.
    log, text = sent(capture(body=json.dumps(inner).encode(), content_type="application/json"))
    assert "S3CR" not in text


@pytest.mark.parametrize("body", [b'{"password": "S3CR-form-1", "a": "x&y=z"}', b'  [{"token": "S3CR-form-2"}]'])
def test_json_sent_as_a_form_is_judged_as_json(body: bytes) -> None:
    log, text = sent(capture(body=body, content_type="application/x-www-form-urlencoded"))
    assert "S3CR" not in text
    assert "[REDACTED" in entry(log)["request"]["postData"]["text"]
    broken = body[:-1]
    log, text = sent(capture(body=broken, content_type="application/x-www-form-urlencoded"))
    assert "S3CR" not in text and entry(log)["request"]["postData"]["text"] == UNPARSABLE


@pytest.mark.parametrize("ctype", ["text/plain", "text/plain; charset=utf-8", None])
def test_json_lines_in_free_text_are_judged_line_by_line(ctype: str | None) -> None:
    lines = [
        json.dumps({"token": "S3CR-line-1", "n": 1}),
        "a plain line mentioning a password",
        '  {"secret": "S3CR-line-2", "broken": ',
        json.dumps([{"Password": "S3CR-line-3"}]),
        '{"other": "kept-value"}',
    ]
    for nl in ("\n", "\r\n"):
        log, text = sent(capture(body=nl.join(lines).encode(), content_type=ctype))
        assert "S3CR" not in text
        out = entry(log)["request"]["postData"]["text"].split(nl)
        assert out[1] == lines[1] and out[2] == UNPARSABLE and "kept-value" in out[4]


# ======================================================================================
# 5. Parser differentials
# ======================================================================================


def _werkzeug_form(body: bytes, ctype: str) -> dict[str, list[str]]:
    """What a werkzeug (Flask) app reads from this body."""
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": ctype,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    _, form, _files = parse_form_data(environ)
    return {k: form.getlist(k) for k in form}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_property_multipart_planted_field_never_arrives(data: st.DataObject) -> None:
    secret = "S3CR" + data.draw(st.text(ALNUM, min_size=12, max_size=12))
    key = data.draw(st.sampled_from(DENY))
    boundary = data.draw(st.sampled_from(["B", "ab;cd", "x y", "b=c", "q-1"]))
    quoted = data.draw(st.booleans()) or any(c in boundary for c in ";= ")
    ctype = f'multipart/form-data; boundary="{boundary}"' if quoted else f"multipart/form-data; boundary={boundary}"
    nls = [b"\r\n", b"\n", b"\r"]
    disposition = data.draw(
        st.sampled_from(
            [
                f'form-data; name="{key}"',
                f'form-data; name="harmless"; name="{key}"',
                f'form-data; name="{key}"; name="harmless"',
                f"form-data; name*=UTF-8''{quote(key[0])}{key[1:]}",
                f'form-data; name={key}; filename=""',
                f'form-data; name="user[{key}]"',
            ]
        )
    )
    extra = data.draw(st.sampled_from(["", 'Content-Disposition: form-data; name="harmless"']))
    parts = [('Content-Disposition: form-data; name="note"', b"hello")]
    planted = [f"Content-Disposition: {disposition}"] + ([extra] if extra else [])
    parts.insert(data.draw(st.integers(0, 1)), ("\n".join(planted), secret.encode()))
    body = b""
    for head, content in parts:
        nl = data.draw(st.sampled_from(nls))
        head_bytes = head.replace("\n", nl.decode()).encode()
        body += b"--" + boundary.encode() + nl + head_bytes + nl + nl + content + data.draw(st.sampled_from(nls))
    body += b"--" + boundary.encode() + b"--" + data.draw(st.sampled_from(nls))
    # A decoy: the boundary as a naive split on ";" would read it.
    if data.draw(st.booleans()):
        decoy = boundary.split(";")[0]
        body = b"--" + decoy.encode() + b'\r\nContent-Disposition: form-data; name="decoy"\r\n\r\n' + body
    for lists in ("deny", "allow"):
        _, text = sent(capture(body=body, content_type=ctype), client(lists))
        assert secret not in text, (body, ctype, _werkzeug_form(body, ctype))


@pytest.mark.parametrize("after", [b"x", b"--x", b";", b"\x0b", b"\r\r\n"])
def test_parts_another_parser_may_read_inside_a_field_count(after: bytes) -> None:
    # "--B" then something werkzeug does not take for a delimiter: the field's content for
    # werkzeug, maybe a part named "password" for another parser. Judged by that name too.
    fake = b"hello\r\n--B" + after + b'\r\nContent-Disposition: form-data; name="password"\r\n\r\nS3CR-embedded'
    body = b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\n' + fake + b"\r\n--B--\r\n"
    log, text = sent(capture(body=body, content_type="multipart/form-data; boundary=B"))
    assert "S3CR" not in text
    assert entry(log)["request"]["postData"]["params"][0]["name"] == "note"


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(ALNUM, min_size=12, max_size=12).map(lambda s: "S3CR" + s),
    key=st.sampled_from(DENY),
    charset=st.sampled_from([None, "utf-8", "latin-1", "utf-16", "utf-16-le", "utf-16-be", "cp500", "utf-7", "bogus"]),
    written=st.sampled_from(["ascii", "declared", "percent-declared"]),
)
def test_property_form_planted_field_never_arrives(secret: str, key: str, charset: str | None, written: str) -> None:
    # Django reads a form in its declared charset (percent escapes too), werkzeug as UTF-8,
    # Starlette its bytes as latin-1: wherever one of them reads the planted field, the
    # value never arrives.
    text = f"note=hello&{key}={secret}&x=1"
    ctype = "application/x-www-form-urlencoded" + (f"; charset={charset}" if charset else "")
    body = text.encode()
    if charset is not None and charset != "bogus":
        if written == "declared":
            body = text.encode(charset)
        elif written == "percent-declared":
            body = f"note=hello&{quote(key.encode(charset))}={secret}".encode()
    for lists in ("deny", "allow"):
        log, log_text = sent(capture(body=body, content_type=ctype), client(lists))
        assert secret not in log_text, (body, ctype)
        # Nor in what the log shows decoded in another charset (text that re-encodes to it).
        post = entry(log)["request"]["postData"]
        shown = [post.get("text", "")] + [t for p in post.get("params", []) for t in (p["name"], p["value"])]
        for item in shown:
            for other in ("utf-16-le", "utf-16-be", "cp500", "latin-1", "utf-7"):
                assert secret.encode() not in item.encode(other, "ignore"), (body, ctype, item)


# ======================================================================================
# 6. A fragment in the request target
# ======================================================================================


def test_a_fragment_left_in_the_query_string_is_judged_as_a_fragment() -> None:
    c = capture(method="GET", path="/x", query="a=1#token=S3CR-frag-1&state=2")
    log, text = sent(c)
    e = entry(log)
    assert "S3CR" not in text
    assert e["request"]["queryString"] == [{"name": "a", "value": "1"}]
    assert e["request"]["url"] == "http://api.example.test/x?a=1#token=%5BREDACTED%2011%5D&state=2"
    # A fragment without pairs is kept; without lists, the target as it came.
    e = entry(sent(capture(method="GET", query="a=1#top"))[0])
    assert e["request"]["url"].endswith("/things?a=1#top")
    e = entry(sent(capture(method="GET", query="a=1#token=x"), client("none"))[0])
    assert e["request"]["url"].endswith("/things?a=1#token=x")


# ======================================================================================
# 7. The allowlist keeps keys and replaces values (readme-metrics 3.4.0)
# ======================================================================================


def test_allowlist_keeps_keys_and_replaces_values_everywhere() -> None:
    doc = {"ok": 123, "password": "hunter2", "nested": {"ok": 1}, "list": [{"id": 7, "x": False}], "n": None}
    form = "ok=1&password=hunter2&user%5Bname%5D=ann&name=bob"
    c = capture(
        query="id=5&q=hunter2",
        headers=[("X-Kept", "v"), ("Cookie", "name=ann; sid=sidsecret9")],
        body=json.dumps(doc).encode(),
        content_type="application/json",
        response_headers=[("Content-Type", "application/x-www-form-urlencoded"), ("X-Trace", "abcd")],
        response_body=form.encode(),
    )
    log, text = sent(c, client("allow", send_cookies=True, allowlist=["id", "name", "ok", "content-type", "cookie"]))
    e = entry(log)
    assert json.loads(e["request"]["postData"]["text"]) == {
        "ok": 123,
        "password": "[REDACTED 7]",
        "nested": "[REDACTED]",
        "list": "[REDACTED]",
        "n": "[REDACTED]",
    }
    assert e["request"]["queryString"] == [{"name": "id", "value": "5"}, {"name": "q", "value": "[REDACTED 7]"}]
    assert e["request"]["url"].endswith("?id=5&q=%5BREDACTED%207%5D")
    assert header_value(e["request"]["headers"], "x-kept") == "[REDACTED 1]"
    assert header_value(e["request"]["headers"], "cookie") == "name=ann; sid=[REDACTED 10]"
    assert header_value(e["response"]["headers"], "x-trace") == "[REDACTED 4]"
    assert e["response"]["content"]["text"] == (
        "ok=1&password=%5BREDACTED%207%5D&user%5Bname%5D=%5BREDACTED%203%5D&name=bob"
    )
    assert "hunter2" not in text and "sidsecret9" not in text
    # Multipart: an unlisted field keeps its name, a file part too.
    body = (
        b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\nann\r\n'
        b'--B\r\nContent-Disposition: form-data; name="pw"\r\n\r\nhunter2\r\n'
        b'--B\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\nfile\r\n--B--\r\n'
    )
    params = entry(sent(capture(body=body, content_type="multipart/form-data; boundary=B"), client("allow"))[0])
    assert params["request"]["postData"]["params"] == [
        {"name": "name", "value": "ann"},
        {"name": "pw", "value": "[REDACTED 7]"},
        {"name": "f", "value": "[REDACTED]"},
    ]
    # Scalars under no key keep their place, replaced.
    log, _ = sent(capture(body=b'[{"id": 1, "x": 2}, "free", 3]', content_type="application/json"), client("allow"))
    assert json.loads(entry(log)["request"]["postData"]["text"]) == [
        {"id": 1, "x": "[REDACTED]"},
        "[REDACTED 4]",
        "[REDACTED]",
    ]


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"{not json", "text/plain"),
        (b"{not json", None),
        (b"plain words", "text/plain"),
        (b"<a>x</a>", "application/xml"),
        (b'{"a": 1}\n{"b": 2}', "text/plain"),
    ],
)
def test_free_text_under_an_allowlist_has_one_marker(body: bytes, ctype: str | None) -> None:
    log, _ = sent(capture(body=body, content_type=ctype), client("allow"))
    assert entry(log)["request"]["postData"]["text"] == NOT_STRUCTURED


def test_a_charset_that_decodes_in_quadratic_time_is_not_used() -> None:
    # punycode decodes in quadratic time: 1 MiB would hold the worker for minutes.
    c = capture(body=b"a-" + b"b" * 200_000, content_type="text/plain; charset=punycode")
    log, _ = sent(c, client("none"))
    assert entry(log)["request"]["postData"]["encoding"] == "base64"
    c = capture(body=b"a=1&b-" + b"c" * 200_000, content_type="application/x-www-form-urlencoded; charset=punycode")
    assert entry(sent(c)[0])["request"]["postData"]["params"][0] == {"name": "a", "value": "1"}


def test_a_form_whose_readings_differ_only_in_values_is_shown() -> None:
    # latin-1 declared, "é" escaped: Django reads "é", werkzeug "\ufffd"; the names agree,
    # so each value is judged by its name and the declared reading is shown.
    body = b"name=Ren%E9&password=s3cr%E9t"
    c = capture(body=body, content_type="application/x-www-form-urlencoded; charset=latin-1")
    params = entry(sent(c, client("allow"))[0])["request"]["postData"]["params"]
    assert params == [{"name": "name", "value": "René"}, {"name": "password", "value": "[REDACTED 6]"}]
