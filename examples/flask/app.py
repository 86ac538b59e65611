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

from readme_metrics import MetricsApiConfig, MetricsMiddleware
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


config = MetricsApiConfig(
    api_key=os.environ.get("README_API_KEY", "local-demo-key"),
    grouping_function=identify,
    denylist=["password", "token"],
    development_mode=True,
)
app.wsgi_app = MetricsMiddleware(app.wsgi_app, config)

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
