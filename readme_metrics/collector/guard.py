"""Who may talk to the collector: the loopback ``Host`` rule, and no cross-site posts.

While the collector is bound to a loopback address, every route answers only requests
whose ``Host`` is a loopback name: a DNS-rebinding page (whose name now points at
127.0.0.1) sends its own name, and can neither read the dashboard nor forge logs.

Every ``POST`` must also look like an API client's, not a browser page's on another
site. The SDKs send ``Content-Type: application/json`` and no ``Origin``; a page can post
cross-site without a CORS preflight only with ``text/plain``, form types or no type at
all, and its browser always adds its ``Origin``. So a ``POST`` needs the JSON media type
(else 415), and an ``Origin``, when there is one, must be the collector's own (else 403):
``http://`` plus the ``Host`` the request was sent to, or the origin of ``--public-url``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from readme_metrics.collector.errors import HttpError

_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether a host name or address (IPv6 with or without brackets) is a loopback one."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:80`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def check_host(loopback_only: bool, host_header: str | None) -> None:
    """403 unless the ``Host`` is a loopback name, while bound to loopback (no ``Host``: HTTP/1.0)."""
    if loopback_only and host_header and not is_loopback(host_name(host_header)):
        raise HttpError(403, "the collector answers only to localhost / 127.0.0.1 while bound to loopback")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased (how browsers write ``Origin``)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_post(content_type: str | None, origin: str | None, host_header: str | None, public_url: str | None) -> None:
    """403 for another site's ``Origin``, 415 for a body that is not declared JSON."""
    if origin is not None:
        own = {origin_of(public_url)} if public_url else set()
        if host_header:
            own.add(f"http://{host_header}".lower())
        if origin.strip().lower() not in own:
            raise HttpError(403, f"cross-site request refused (Origin {origin[:100]!r} is not this collector)")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HttpError(415, "the body must be sent as Content-Type: application/json")
