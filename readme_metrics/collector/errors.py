"""The collector's error answer, shared by the server and the modules that check requests."""

from __future__ import annotations


class HttpError(Exception):
    """An error answer: status and reason (sent as ``{"error": reason}``), extra headers.

    ``close``: the connection must end after the answer (what is left of the request
    cannot be told apart from a next request).
    """

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        self.close = close
