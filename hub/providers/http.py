"""The one outbound HTTP client providers use: timeouts, connection pooling, an SSRF guard,
a clear line between "the request never left" and "the outcome is unknown", and the mark
of a transport failure.

    from hub.providers.http import provider_http, RequestNotSent, OutcomeUnknown, ProviderHttpError

    try:
        response = provider_http().post(url, json=body, allow_private=config.allow_private)
    except ProviderHttpError as exc:   # RequestNotSent: DNS, refused, connect timeout, blocked
        return exc.result(ref_id=...)  #   -> REJECTED, not sent: safe to try elsewhere
                                       # OutcomeUnknown: sent, no (complete) answer
                                       #   -> UNKNOWN: never retry elsewhere; check status
    if response.status_code >= 500:
        return server_error(response)  # UNKNOWN

Every one of those results has ``transport_failure`` set: it was the provider's transport,
not an answer about this purchase (only transport failures feed a configuration's shared
circuit breaker). The client also notes each transport failure it meets during a provider
call (:func:`watch_transport`), so that the hub marks the call's result even when a plugin
built it by hand.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from hub.netguard import DestinationRefused, Guard, Resolver, guarded_client, system_resolver
from hub.providers.contract import ProviderResult, State

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class ProviderHttpError(Exception):
    """A failure of the provider's transport (never an answer about a purchase)."""

    transport_failure = True

    def result(self, **fields: Any) -> ProviderResult:
        """The normalized result of this failure (``transport_failure`` set)."""
        raise NotImplementedError


class RequestNotSent(ProviderHttpError):
    """The request never reached the provider: nothing can have happened there."""

    def result(self, **fields: Any) -> ProviderResult:
        """``REJECTED``, not sent: safe to try the next provider."""
        return ProviderResult(State.REJECTED, message=f"not sent: {self}", data={"not_sent": True},
                              transport_failure=True, **fields)


class OutcomeUnknown(ProviderHttpError):
    """The request may have reached the provider; its outcome is unknown."""

    def result(self, **fields: Any) -> ProviderResult:
        """``UNKNOWN``: check the status with the same reference; never buy elsewhere."""
        return ProviderResult(State.UNKNOWN, message=f"no answer: {self}", transport_failure=True, **fields)


def server_error(response: httpx.Response, **fields: Any) -> ProviderResult:
    """``UNKNOWN`` for an HTTP 5xx answer (the request may have been processed)."""
    return ProviderResult(State.UNKNOWN, message=f"HTTP {response.status_code} from the provider",
                          raw=response.text[:2000], transport_failure=True, **fields)


#: the transport failures met during the current provider call (None: no call is watched)
_seen: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("rop_provider_transport", default=None)


@contextlib.contextmanager
def watch_transport() -> Iterator[list[str]]:
    """Collect the transport failures (refused, timeouts, resets, 5xx answers) the client
    meets in this thread until the block ends: the hub wraps each provider call in it."""
    seen: list[str] = []
    token = _seen.set(seen)
    try:
        yield seen
    finally:
        _seen.reset(token)


def _note(what: str) -> None:
    seen = _seen.get()
    if seen is not None:
        seen.append(what)


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
        try:
            _http_host(url)
        except RequestNotSent:
            _note("not an http(s) URL")
            raise
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        try:
            response = self.clients[bool(allow_private)].request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol,
                httpx.InvalidURL, httpx.PoolTimeout) as exc:
            _note(type(exc).__name__)
            raise RequestNotSent(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:  # ReadTimeout, RemoteProtocolError, ReadError, WriteError...
            _note(type(exc).__name__)
            raise OutcomeUnknown(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            _note(f"HTTP {response.status_code}")
        return response

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
