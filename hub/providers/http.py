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

import threading
from typing import Any
from urllib.parse import urlsplit

import httpx

from hub.netguard import DestinationRefused, Guard, Resolver, guarded_client, system_resolver

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class ProviderHttpError(Exception):
    pass


class RequestNotSent(ProviderHttpError):
    """The request never reached the provider: nothing can have happened there."""


class OutcomeUnknown(ProviderHttpError):
    """The request may have reached the provider; its outcome is unknown."""


def check_destination(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Refuse URLs that are not http(s) or whose host resolves to a non-public address (loopback,
    private, link-local, reserved, multicast, or an IPv6 form carrying one: hub.netguard),
    unless private ones are allowed.

    The call itself does not rely on this look-up: :class:`ProviderHttp` connects through
    :class:`hub.netguard.GuardedTransport`, which resolves again, judges, and connects to the
    very address it judged. This is the early answer, for a configuration being saved.
    """
    host = _http_host(url)
    if allow_private:
        return
    try:
        Guard(resolver=resolver or system_resolver).addresses(
            host, urlsplit(url).port or (443 if url.startswith("https") else 80))
    except DestinationRefused as exc:
        raise RequestNotSent(str(exc)) from exc


def _http_host(url: str) -> str:
    """The host of an http(s) URL. :raise RequestNotSent: for anything else."""
    try:
        parts = urlsplit(url)
        host = parts.hostname if parts.scheme in {"http", "https"} else None
    except ValueError:
        host = None
    if not host:
        raise RequestNotSent(f"not an http(s) URL: {url!r}")
    return host


class ProviderHttp:
    """A pooled, thread-safe HTTP client shared by every provider of the process.

    Two pools: one whose connections go only to public addresses, one for configurations
    allowed private ones (``allow_private``). Both resolve a host once per connection and
    connect to the address they checked (:class:`hub.netguard.GuardedTransport`).
    """

    def __init__(self, timeout: httpx.Timeout = DEFAULT_TIMEOUT, *, resolver: Resolver | None = None,
                 verify: bool | object = True):
        headers = {"User-Agent": "rop-hub-provider/0.1"}
        self.clients = {allow: guarded_client(allow_private=allow, resolver=resolver, verify=verify, limits=_LIMITS,
                                              timeout=timeout, headers=headers)
                        for allow in (False, True)}

    def request(self, method: str, url: str, *, allow_private: bool = False,
                timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        _http_host(url)
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        try:
            return self.clients[bool(allow_private)].request(method, url, **kwargs)
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
