"""Who may talk to the collector: the loopback ``Host`` rule.

While the collector is bound to a loopback address, the dashboard answers only requests
whose ``Host`` is a loopback name (a guard against DNS rebinding).
"""

from __future__ import annotations

import ipaddress

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
