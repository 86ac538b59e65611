"""Shared pieces of the framework integration tests (``tests/test_integrations_*.py``).

Each test app logs with a grouping function that reads ``X-Req-Id`` and ``X-Api-Key``;
every request carries a fresh ``X-Req-Id`` so its log can be found at the stand-in.
"Exactly one log" is shown the FIFO way: after the log arrived, a sentinel request is
sent and its log awaited; a duplicate of the first would have arrived before it.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any

from tests.servers import BIN, RawResponse, Server, free_port, raw_request
from tests.standin import MetricsStandIn, entry, header_value, with_header

__all__ = ["BIN", "entry", "header_value"]


def waitress(app: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    argv = [str(BIN / "waitress-serve"), f"--listen=127.0.0.1:{port}", "--threads=4", app]
    return Server(argv, port, env)


def hypercorn(app: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    argv = [str(BIN / "hypercorn"), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "10", app]
    return Server(argv, port, env)


def send(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[RawResponse, str]:
    """One request carrying a fresh ``X-Req-Id``: (the raw response, that id)."""
    rid = uuid.uuid4().hex
    response = raw_request(server.port, method, path, {"X-Req-Id": rid, **(headers or {})}, body, **kwargs)
    return response, rid


def one_log(api: MetricsStandIn, server: Server, rid: str, sentinel_path: str = "/ping") -> dict[str, Any]:
    """The log of request ``rid``, after showing that it arrived exactly once."""
    log = api.wait_for(with_header("X-Req-Id", rid))[0]
    _, sentinel = send(server, "GET", sentinel_path)
    api.wait_for(with_header("X-Req-Id", sentinel))
    assert len(api.matching(with_header("X-Req-Id", rid))) == 1
    return log


def no_log(api: MetricsStandIn, server: Server, rid: str, sentinel_path: str = "/ping") -> None:
    """Request ``rid`` was not logged (its log would have come before the sentinel's)."""
    _, sentinel = send(server, "GET", sentinel_path)
    api.wait_for(with_header("X-Req-Id", sentinel))
    assert not api.matching(with_header("X-Req-Id", rid))


def decode_base64_text(content: Mapping[str, Any]) -> bytes:
    """The bytes of a HAR ``content`` or ``postData`` (text, or base64 when it says so)."""
    text = content.get("text", "")
    if content.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            return b""
    return str(text).encode("utf-8")


def response_body(log: dict[str, Any]) -> bytes:
    return decode_base64_text(entry(log)["response"]["content"])


def request_body(log: dict[str, Any]) -> bytes:
    return decode_base64_text(entry(log)["request"].get("postData", {}))


def group(request: Any) -> Any:
    """The test apps' grouping function: any framework's request object with ``headers``."""
    headers = request.headers
    if headers.get("X-No-Log"):
        return None
    return {
        "api_key": headers.get("X-Api-Key", "anon-key-0000"),
        "label": type(request).__module__ + "." + type(request).__qualname__,
        "email": "t@example.test",
    }
