"""An example Flask API wrapped by readme_metrics.

    README_METRICS_SERVER=http://127.0.0.1:8787 python examples/flask/app.py

``README_METRICS_SERVER`` points the SDK at a metrics endpoint (the local collector:
``readme-metrics serve``); without it, logs go to the hosted API with ``README_API_KEY``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, jsonify, request

from readme_metrics import MetricsApiConfig, MetricsMiddleware, Route
from readme_metrics.webhooks import VerificationError, verify

app = Flask(__name__)


@app.get("/hello")
def hello() -> Any:
    return jsonify(message=f"hello {request.args.get('name', 'world')}")


@app.post("/login")
def login() -> Any:
    body = request.get_json(silent=True) or {}
    if body.get("password") != "correct horse battery staple":
        return jsonify(error="wrong password"), 401
    return jsonify(token="t-" + str(body.get("user", "")))


@app.get("/countdown")
def countdown() -> Response:
    def lines() -> Iterator[str]:
        for n in range(3, 0, -1):
            yield f"{n}\n"
            time.sleep(0.1)
        yield "liftoff\n"

    return Response(lines(), content_type="text/plain")


@app.get("/fail")
def fail() -> Any:
    raise RuntimeError("this endpoint always fails")


@app.get("/items/<int:item_id>")
def item(item_id: int) -> Any:
    """Logged with ``_route: /items/{item_id}``: one endpoint in the dashboard, whatever the id."""
    return jsonify(id=item_id, name=f"item {item_id}")


@app.post("/audit/orders")
def audit_orders() -> Any:
    """An audit route: its bodies are kept whole, up to 16 MiB (see ``routes=`` below)."""
    order = request.get_json(silent=True) or {}
    return jsonify(accepted=True, lines=len(order.get("lines", [])))


@app.get("/health")
def health() -> Any:
    """Never logged (``Route(log=False)``)."""
    return jsonify(ok=True)


WEBHOOK_SECRET = os.environ.get("README_WEBHOOK_SECRET", "local-webhook-secret")


@app.post("/webhook")
def webhook() -> Any:
    """ReadMe asks who a documentation reader is: answer only a call signed by ReadMe."""
    try:
        verify(request.get_data(), request.headers.get("ReadMe-Signature"), WEBHOOK_SECRET)
    except VerificationError as exc:
        return jsonify(error=str(exc)), 401
    email = (request.get_json(silent=True) or {}).get("email", "")
    return jsonify(email=email, keys=[{"name": "default", "apiKey": f"demo-key-for-{email}"}])


def identify(req: Any) -> dict[str, str] | None:
    """Who is calling: here, the ``X-Api-Key`` header of the request (None: don't log)."""
    key = req.headers.get("X-Api-Key")
    if key is None:
        return {"api_key": "anonymous-caller", "label": "Anonymous"}
    return {"api_key": key, "label": f"Customer {key[-4:]}", "email": f"{key[-4:]}@example.com"}


def metadata(req: Any, response: Any) -> dict[str, Any]:
    """Stored with each log as ``_metadata`` (runs after the response; ``response`` has
    ``status`` and ``headers``)."""
    return {"tenant": req.headers.get("X-Tenant", "public"), "deployment": os.environ.get("DEPLOYMENT", "local")}


config = MetricsApiConfig(
    api_key=os.environ.get("README_API_KEY", "local-demo-key"),
    grouping_function=identify,
    denylist=["password", "token"],
    development_mode=True,
    # Route policies (docs/routes.md): the first matching pattern applies.
    routes={
        "/audit/*": Route(max_body_bytes=16 * 1024 * 1024, denylist=["card"]),
        "/health": Route(log=False),
    },
    metadata=metadata,
)
app.wsgi_app = MetricsMiddleware(app.wsgi_app, config)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
