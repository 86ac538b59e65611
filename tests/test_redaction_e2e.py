"""Redaction end to end, through both middlewares: a Flask app under gunicorn (WSGI) and a
Starlette app under uvicorn (ASGI), each configured with a denylist, and the real metrics
stand-in. Secrets sent in a nested JSON field, a header of any case, a query parameter, a
form field, a multipart field and file, cookies and the Authorization header, and secrets
the app answers (JSON, header, Set-Cookie, a gzip-encoded body), never reach the stand-in.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from readme_metrics.build.redaction import Redactor
from tests.apps.redaction_apps import RESPONSE_SECRETS
from tests.servers import Server, gunicorn, raw_request, uvicorn
from tests.standin import MetricsStandIn, entry, header_value, with_header

DENYLIST = "password,api_key,X-Api-Token,token,card"
#: What the apps' builder (API key "test-api-key") makes of an Authorization value.
credential = Redactor(api_key="test-api-key").credential


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


def start(kind: str, env: dict[str, str]) -> Server:
    if kind == "wsgi":
        return gunicorn("tests.apps.redaction_apps:wsgi_wrapped", env)
    return uvicorn("tests.apps.redaction_apps:asgi_wrapped", env)


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def server(request: pytest.FixtureRequest, api: MetricsStandIn) -> Iterator[Server]:
    srv = start(request.param, {"README_METRICS_SERVER": api.url, "RM_DENYLIST": DENYLIST})
    yield srv
    srv.stop()


def send(
    server: Server, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, str]:
    """One request tagged with a fresh X-Test-Id; (status, test id)."""
    test_id = uuid.uuid4().hex
    response = raw_request(server.port, method, path, {"X-Test-Id": test_id, **(headers or {})}, body)
    return int(response.status_line.split()[1]), test_id


def arrived(api: MetricsStandIn, test_id: str) -> tuple[dict[str, Any], str]:
    """The one log of a request, and all of it serialized (what is searched for secrets)."""
    (log,) = api.wait_for(with_header("X-Test-Id", test_id))
    return log, json.dumps(log, ensure_ascii=False)


def secret(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:16]}"


def test_json_headers_query_cookies(server: Server, api: MetricsStandIn) -> None:
    s = {k: secret(k) for k in ("json", "deep", "header", "query", "auth", "cookie", "number")}
    body = json.dumps(
        {
            "user": {"name": "ann", "profile": [{"PASSWORD": s["json"]}, {"settings": {"Token": {"v": s["deep"]}}}]},
            "card": int(s["number"].encode().hex()[:18], 16),
            "note": "visible-note",
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "x-API-token": s["header"],
        "Authorization": f"Bearer {s['auth']}",
        "Cookie": f"sid={s['cookie']}",
    }
    status, test_id = send(server, "POST", f"/echo?API_KEY={s['query']}&page=2", headers, body)
    assert status == 200
    log, text = arrived(api, test_id)
    for value in s.values():
        assert value not in text
    assert str(int(s["number"].encode().hex()[:18], 16)) not in text
    e = entry(log)
    assert "visible-note" in e["request"]["postData"]["text"]
    assert "visible-note" in e["response"]["content"]["text"]  # the echo is redacted too
    assert json.loads(e["request"]["postData"]["text"])["user"]["profile"][0]["PASSWORD"].startswith("[REDACTED ")
    assert header_value(e["request"]["headers"], "authorization") == credential(f"Bearer {s['auth']}")
    assert {"name": "page", "value": "2"} in e["request"]["queryString"]
    assert "page=2" in e["request"]["url"] and "page=2" in e["pageref"]


def test_form_fields(server: Server, api: MetricsStandIn) -> None:
    value = secret("form")
    body = f"name=ann&Password={value}&x=1".encode()
    status, test_id = send(server, "POST", "/echo", {"Content-Type": "application/x-www-form-urlencoded"}, body)
    assert status == 200
    log, text = arrived(api, test_id)
    assert value not in text
    assert {"name": "name", "value": "ann"} in entry(log)["request"]["postData"]["params"]


def test_multipart_field_and_file(server: Server, api: MetricsStandIn) -> None:
    field, file_content = secret("multipart"), secret("file")
    boundary = "b" + uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nreport\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="password"\r\n\r\n{field}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="doc"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\n{file_content}\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, test_id = send(server, "POST", "/echo", headers, body)
    assert status == 200
    log, text = arrived(api, test_id)
    assert field not in text and file_content not in text
    params = entry(log)["request"]["postData"]["params"]
    assert params[0] == {"name": "title", "value": "report"}
    assert params[2]["fileName"] == "a.txt" and params[2]["_size"] == len(file_content)


def test_review_leaks_stay_closed(server: Server, api: MetricsStandIn) -> None:
    # A field whose content fakes a part ("--BOUNDARYx" is not a delimiter), a proxy
    # credential, a token in a URL fragment, JSON under a binary type with a leading newline.
    s = {k: secret(k) for k in ("fake", "proxy", "fragment", "octet")}
    boundary = "b" + uuid.uuid4().hex
    fake = f'x\r\n--{boundary}x\r\nContent-Disposition: form-data; name="harmless"\r\n\r\n{s["fake"]}'
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="password"\r\n\r\n{fake}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nreport\r\n--{boundary}--\r\n'
    ).encode()
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Proxy-Authorization": f"Basic {s['proxy']}",
        "Referer": f"https://app.test/cb#token={s['fragment']}&state=1",
    }
    status, test_id = send(server, "POST", "/echo", headers, body)
    assert status == 200
    log, text = arrived(api, test_id)
    e = entry(log)
    assert [p["name"] for p in e["request"]["postData"]["params"]] == ["password", "title"]
    assert header_value(e["request"]["headers"], "proxy-authorization") == credential(f"Basic {s['proxy']}")
    body = b"\n" + json.dumps({"token": s["octet"], "public": "octet-visible"}).encode()
    status, octet_id = send(server, "POST", "/echo", {"Content-Type": "application/octet-stream"}, body)
    assert status == 200
    octet_log, octet_text = arrived(api, octet_id)
    for value in s.values():
        assert value not in text and value not in octet_text
    assert json.loads(entry(octet_log)["request"]["postData"]["text"])["public"] == "octet-visible"


def test_response_secrets_and_gzip(server: Server, api: MetricsStandIn) -> None:
    status, test_id = send(server, "GET", "/secrets")
    assert status == 200
    log, text = arrived(api, test_id)
    for value in (RESPONSE_SECRETS["json"], RESPONSE_SECRETS["header"], RESPONSE_SECRETS["cookie"]):
        assert value not in text
    assert "visible-value" in entry(log)["response"]["content"]["text"]

    status, test_id = send(server, "GET", "/gzip")
    assert status == 200
    log, text = arrived(api, test_id)
    assert RESPONSE_SECRETS["gzip"] not in text
    assert json.loads(entry(log)["response"]["content"]["text"]) == {"token": "[REDACTED 23]", "public": "gzip-visible"}


def test_options_and_excluded_paths_are_not_logged(server: Server, api: MetricsStandIn) -> None:
    status, options_id = send(server, "OPTIONS", "/echo")
    assert status == 204
    status, health_id = send(server, "GET", "/health")
    assert status == 200
    status, last_id = send(server, "POST", "/echo", {"Content-Type": "text/plain"}, b"after")
    api.wait_for(with_header("X-Test-Id", last_id))
    assert not api.matching(with_header("X-Test-Id", options_id))
    assert not api.matching(with_header("X-Test-Id", health_id))


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_log_body_false_sends_no_bodies(kind: str, api: MetricsStandIn) -> None:
    srv = start(kind, {"README_METRICS_SERVER": api.url, "RM_LOG_BODY": "0"})
    try:
        body = json.dumps({"anything": secret("body")}).encode()
        status, test_id = send(srv, "POST", "/echo", {"Content-Type": "application/json"}, body)
        assert status == 200
        log, text = arrived(api, test_id)
    finally:
        srv.stop()
    e = entry(log)
    assert "postData" not in e["request"]
    assert e["response"]["content"]["text"] == ""
    assert e["request"]["bodySize"] == e["response"]["bodySize"] == len(body)
    assert "body-" not in text


def test_a_fragment_in_the_request_target_is_redacted(server: Server, api: MetricsStandIn) -> None:
    # A raw request target with a fragment: a server may pass it in the query string.
    value = secret("fragment")
    status, test_id = send(server, "POST", f"/echo?page=2#token={value}&state=1", {"Content-Type": "text/plain"}, b"x")
    assert status == 200
    log, text = arrived(api, test_id)
    assert value not in text
    assert {"name": "page", "value": "2"} in entry(log)["request"]["queryString"]
