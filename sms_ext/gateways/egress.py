"""The optional egress guard: gateway requests never reach loopback, link-local or private
addresses (``SMS_GATEWAY_DENY_PRIVATE``).

An admin form that takes a URL, and a Lua script that may build one, can otherwise make the
worker call internal services or a cloud metadata endpoint (169.254.169.254) and show what they
answered. The check runs on the socket once it is connected, before a byte is sent (before the
TLS handshake too): what is checked is the address actually used, so a DNS name that resolves to
a public address at one lookup and a private one at the next (rebinding) gains nothing. Saving a
gateway whose URL names a private address literally is refused earlier, on the form.

With an HTTP proxy configured in the environment, the proxy's address is the one checked.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests.adapters
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import SMSError

LOCAL_NAMES = ("localhost", "localhost.localdomain")


class EgressRefused(SMSError):
    """A gateway request was headed for an address the guard refuses.

    Internal: :func:`.http.exchange` turns it into a failed, non-retryable send, so it never
    reaches integrators (hence not in :mod:`sms_ext.errors`). Deliberately not an ``OSError``:
    urllib3 and requests would wrap one as a retryable connection error.
    """


def refused_address(address: str) -> bool:
    """Whether ``address`` (an IP literal) is loopback, link-local, private or otherwise not a
    public internet address (unspecified, multicast, reserved, shared CGNAT space)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def literal_refusal(url: str, label: str) -> str | None:
    """Why ``url`` is refused when its host is a private IP literal or ``localhost``, else
    ``None``; names that need DNS are checked when the request connects."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return f"{label} points at this machine ({host}), which SMS_GATEWAY_DENY_PRIVATE refuses."
    try:
        refused = refused_address(host)
    except ValueError:
        return None
    if refused:
        return (
            f"{label} points at the private address {host}, which SMS_GATEWAY_DENY_PRIVATE "
            "refuses: use the provider's public address."
        )
    return None


def _checked(sock: socket.socket, host: str) -> socket.socket:
    peer = sock.getpeername()[0]
    if refused_address(peer):
        sock.close()
        raise EgressRefused(
            f"refused: {host} is at the private address {peer} (SMS_GATEWAY_DENY_PRIVATE)"
        )
    return sock


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _checked(super()._new_conn(), self.host)


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _checked(super()._new_conn(), self.host)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_GUARDED_POOLS = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """An ``HTTPAdapter`` whose connections refuse private peers with :class:`EgressRefused`
    (direct ones, and those to an HTTP proxy, whose address is then the one checked)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _GUARDED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _GUARDED_POOLS
        return manager
