"""The one outbound HTTP client providers use: timeouts, connection pooling, an SSRF guard,
and a clear line between "the request never left" and "the outcome is unknown".

    from hub.providers.http import provider_http, RequestNotSent, OutcomeUnknown

    try:
        response = provider_http().post(url, json=body, allow_private=config.allow_private)
    except RequestNotSent:   # DNS, refused connection, connect timeout, blocked address
        return ProviderResult(State.REJECTED, ...)  # safe to try elsewhere
    except OutcomeUnknown:   # sent, but no (complete) answer: read timeout, reset
        return ProviderResult(State.UNKNOWN, ...)   # never retry elsewhere; check status
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class ProviderHttpError(Exception):
    pass


class RequestNotSent(ProviderHttpError):
    """The request never reached the provider: nothing can have happened there."""


class OutcomeUnknown(ProviderHttpError):
    """The request may have reached the provider; its outcome is unknown."""


def check_destination(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that resolve to loopback/private/link-local addresses (unless allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise RequestNotSent(f"not an http(s) URL: {url!r}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise RequestNotSent(f"cannot resolve {parts.hostname}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (address.is_private or address.is_loopback or address.is_link_local
                or address.is_reserved or address.is_multicast or address.is_unspecified):
            raise RequestNotSent(f"{parts.hostname} resolves to a non-public address {address}")


class ProviderHttp:
    """A pooled, thread-safe HTTP client shared by every provider of the process."""

    def __init__(self, timeout: httpx.Timeout = DEFAULT_TIMEOUT):
        self.client = httpx.Client(timeout=timeout, limits=_LIMITS,
                                   headers={"User-Agent": "rop-hub-provider/0.1"})

    def request(self, method: str, url: str, *, allow_private: bool = False,
                timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        check_destination(url, allow_private=allow_private)
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        try:
            return self.client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol,
                httpx.InvalidURL, httpx.PoolTimeout) as exc:
            raise RequestNotSent(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:  # ReadTimeout, RemoteProtocolError, ReadError, WriteError...
            raise OutcomeUnknown(f"{type(exc).__name__}: {exc}") from exc

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)


_shared: ProviderHttp | None = None
_lock = threading.Lock()


def provider_http() -> ProviderHttp:
    """The process-wide client (created on first use)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = ProviderHttp()
        return _shared
