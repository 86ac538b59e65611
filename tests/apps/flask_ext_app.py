"""A Flask app set up with the extension ``ReadMeMetrics`` (``init_app`` style)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response, request, send_file, stream_with_context

from readme_metrics import MetricsApiConfig
from readme_metrics.flask_readme import ReadMeMetrics
from readme_metrics.webhooks import VerificationError, verify
from tests.integration import group

FILE = Path(tempfile.gettempdir()) / "readme_metrics_flask_ext_file.bin"
FILE_BYTES = bytes(range(256)) * 1024  # 256 KiB: many blocks of the server's file wrapper
WEBHOOK_SECRET = "whsec-flask"

metrics = ReadMeMetrics(
    MetricsApiConfig(
        "test-api-key",
        group,
        base_log_url="https://docs.example.test",
        flush_interval=0.05,
        max_body_bytes=1024 * 1024,
    )
)


def create_app(with_metrics: bool = True) -> Flask:
    if not FILE.exists() or FILE.read_bytes() != FILE_BYTES:
        FILE.write_bytes(FILE_BYTES)
    app = Flask(__name__)

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    @app.route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def echo() -> Response:
        return Response(request.get_data(), content_type=request.content_type or "application/octet-stream")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for i in range(4):
                yield f"line {i} of {request.args.get('who', 'nobody')}\n"

        return Response(stream_with_context(chunks()), content_type="text/plain")

    @app.get("/file")
    def file() -> Response:
        return send_file(FILE, mimetype="application/octet-stream")

    @app.get("/has-doc-header")
    def has_doc_header() -> Response:
        response = Response("own header")
        response.headers["x-documentation-url"] = "https://mine.example.test/own"
        return response

    @app.post("/webhook")
    def webhook() -> Any:
        try:
            verify(request.get_data(), request.headers.get("readme-signature"), WEBHOOK_SECRET)
        except VerificationError as exc:
            return {"error": str(exc)}, 401
        payload = request.get_json()
        return {"email": payload["email"], "keys": [{"name": "default", "apiKey": "k-" + payload["email"]}]}

    if with_metrics:
        metrics.init_app(app)
        metrics.init_app(app)  # a second call does nothing
    return app


app = create_app()
bare = create_app(with_metrics=False)
