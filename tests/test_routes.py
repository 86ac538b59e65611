"""Route policies, per-view policies, sampling and weights, response-aware hooks, metadata,
``_route`` and ``_exception`` (docs/routes.md), under real servers: Flask under gunicorn,
FastAPI under uvicorn, Django under gunicorn and uvicorn, all with the same configuration
(``tests.apps.routes_config``) and the real stand-in of the metrics API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.apps.routes_config import BIG, RAISED
from tests.integration import entry, no_log, one_log, request_body, response_body, send
from tests.servers import RawResponse, Server, gunicorn, uvicorn
from tests.standin import MetricsStandIn, with_header

DJANGO = {"DJANGO_SETTINGS_MODULE": "tests.apps.routes_django"}
SERVERS = {
    "flask": (gunicorn, "tests.apps.routes_apps:flask_app", {}),
    "fastapi": (uvicorn, "tests.apps.routes_apps:fastapi_app", {}),
    "django-wsgi": (gunicorn, "tests.apps.django_project.wsgi:application", DJANGO),
    "django-asgi": (uvicorn, "tests.apps.django_project.asgi:application", DJANGO),
}
#: The class of the response the hooks get: the framework's own, else the read-only view.
RESPONSE_KIND = {
    "flask": "Response",
    "fastapi": "ResponseView",
    "django-wsgi": "JsonResponse",
    "django-asgi": "JsonResponse",
}


def status(response: RawResponse) -> int:
    return int(response.status_line.split()[1])


@pytest.fixture(scope="module")
def api() -> Iterator[MetricsStandIn]:
    with MetricsStandIn() as standin:
        yield standin


@pytest.fixture(scope="module", params=list(SERVERS))
def app(request: pytest.FixtureRequest, api: MetricsStandIn) -> Iterator[tuple[str, Server]]:
    start, target, env = SERVERS[request.param]
    server = start(target, {"README_METRICS_SERVER": api.url, **env})
    yield request.param, server
    server.stop()


def test_audit_route_keeps_whole_bodies(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    body = json.dumps({"rows": [{"i": i, "pad": "y" * 100} for i in range(20_000)]}).encode()  # ~2.4 MB
    assert len(body) > 2 * 1024 * 1024  # over the app-wide 1 MiB
    response, rid = send(server, "POST", "/audit/echo", body, {"Content-Type": "application/json"}, timeout=30)
    assert response.body == body
    log = api.wait_for(with_header("X-Req-Id", rid), timeout=20)[0]
    assert request_body(log) == body
    assert response_body(log) == body
    assert "_truncated" not in entry(log)["request"]["postData"]


def test_route_template_and_metadata(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    name, server = app
    response, rid = send(server, "GET", "/items/42", headers={"X-Tenant": "acme"})
    assert status(response) == 200
    e = entry(one_log(api, server, rid))
    assert e["_route"] == "/items/{item_id}"
    meta = e["_metadata"]
    assert meta["tenant"] == "acme" and meta["status"] == 200
    assert meta["password"] == "[REDACTED 2]"  # redacted like everything else
    assert meta["kind"] == RESPONSE_KIND[name]
    assert meta["content_type"].startswith("application/json")
    assert "_weight" not in e and "_exception" not in e


def test_plain_wsgi_middleware_on_flask_sends_the_route(api: MetricsStandIn) -> None:
    """Flask clears its request from the environ when its context ends: the plain WSGI
    middleware reads the matched rule at ``start_response``, while it is still there."""
    server = gunicorn("tests.apps.routes_apps:flask_plain", {"README_METRICS_SERVER": api.url})
    try:
        for item in (7, 42):
            response, rid = send(server, "GET", f"/items/{item}", headers={"X-Tenant": "acme"})
            assert status(response) == 200
            e = entry(one_log(api, server, rid))
            assert e["_route"] == "/items/{item_id}"
            assert e["_metadata"]["tenant"] == "acme" and e["_metadata"]["kind"] == "ResponseView"
    finally:
        server.stop()


def test_no_route_on_404(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    response, rid = send(server, "GET", "/no/such/thing")
    assert status(response) == 404
    e = entry(one_log(api, server, rid))
    assert "_route" not in e
    assert e["_metadata"]["status"] == 404


def test_log_false_by_pattern_and_by_view(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    for path in ("/quiet/x", "/view-quiet"):
        response, rid = send(server, "GET", path)
        assert response.body == b"quiet"
        no_log(api, server, rid)


def test_view_policy_without_bodies(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    body = b'{"hello": "world"}'
    response, rid = send(server, "POST", "/view-nobody", body, {"Content-Type": "application/json"})
    assert response.body == body
    e = entry(one_log(api, server, rid))
    assert e["request"]["bodySize"] == len(body)
    assert "postData" not in e["request"]
    assert e["response"]["content"]["text"] == ""


def test_route_denylist_adds_to_app_wide(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    body = b'{"card": "4111111111111111", "password": "pw", "note": "ok"}'
    _, rid = send(server, "POST", "/secret/abc", body, {"Content-Type": "application/json"})
    logged = json.loads(request_body(one_log(api, server, rid)))
    assert logged == {"card": "[REDACTED 16]", "password": "[REDACTED 2]", "note": "ok"}
    # elsewhere "card" is not listed
    _, rid = send(server, "POST", "/audit/echo", body, {"Content-Type": "application/json"})
    assert json.loads(request_body(one_log(api, server, rid)))["card"] == "4111111111111111"


def test_sampled_out_route_logs_only_errors_exceptions_and_slow(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    _, ok = send(server, "GET", "/sampled/ok")
    no_log(api, server, ok)
    _, fail = send(server, "GET", "/sampled/fail")
    e = entry(one_log(api, server, fail))
    assert e["response"]["status"] == 503 and "_weight" not in e
    assert "sampled out" in e["comment"]
    _, slow = send(server, "GET", "/sampled/slow")
    assert entry(one_log(api, server, slow))["time"] >= 300
    response, raised = send(server, "GET", "/sampled/raise")
    assert status(response) == 500
    e = entry(one_log(api, server, raised))
    exc = e["_exception"]
    assert exc["type"] == "ValueError"
    # the app-wide denylist applies to the message: password=..., and a dict's 'card' stays
    assert exc["message"] == RAISED.replace("hunter2", "[REDACTED 7]")
    frames = exc["traceback"]
    assert 1 <= len(frames) <= 30
    assert frames[-1]["function"] == "sampled" or frames[-1]["function"].endswith("_sampled")
    assert frames[-1]["file"].endswith(".py") and isinstance(frames[-1]["line"], int)


@pytest.mark.parametrize("prefix", ["/half", "/view-half"])  # by pattern, and on the view
def test_sampled_logs_carry_their_weight(api: MetricsStandIn, app: tuple[str, Server], prefix: str) -> None:
    _, server = app
    rids = [send(server, "GET", f"{prefix}/{i}")[1] for i in range(40)]
    _, sentinel = send(server, "GET", "/ping")
    api.wait_for(with_header("X-Req-Id", sentinel))
    logged = [log for rid in rids for log in api.matching(with_header("X-Req-Id", rid))]
    assert 0 < len(logged) < 40  # 2 x 2**-40 odds of failing by chance
    assert all(entry(log)["_weight"] == 2.0 for log in logged)
    # Django's route is a regex there (re_path): normalized the same way
    assert {entry(log)["_route"] for log in logged} == {f"{prefix}/{{n}}"}


def test_response_aware_skip_and_guarded_metadata(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    response, rid = send(server, "GET", "/teapot")
    assert status(response) == 418
    no_log(api, server, rid)
    response, rid = send(server, "GET", "/items/1", headers={"X-Metadata-Raise": "1"})
    assert status(response) == 200
    e: dict[str, Any] = entry(one_log(api, server, rid))  # still logged
    assert "_metadata" not in e and e["_route"] == "/items/{item_id}"


def test_view_body_limit_reaches_the_response_of_a_get(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    # No request body for the view's policy to be applied on: it applies at response start.
    _, server = app
    response, rid = send(server, "GET", "/view-big", timeout=30)
    assert response.body == BIG
    assert response_body(one_log(api, server, rid)) == BIG


def test_no_documentation_link_for_a_sampled_out_request(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    response, rid = send(server, "GET", "/sampled/ok")
    assert response.header("x-documentation-url") is None  # its log is never sent
    no_log(api, server, rid)
    response, rid = send(server, "GET", "/items/3")
    link = response.header("x-documentation-url")
    assert link == f"https://docs.example.test/logs/{one_log(api, server, rid)['_id']}"


def test_an_odd_skip_result_is_the_hooks_failure(api: MetricsStandIn, app: tuple[str, Server]) -> None:
    _, server = app
    response, rid = send(server, "GET", "/items/5", headers={"X-Odd-Skip": "1"})  # its __bool__ raises
    assert status(response) == 200 and json.loads(response.body) == {"id": 5}
    assert entry(one_log(api, server, rid))["_route"] == "/items/{item_id}"  # still logged
