"""The one outbound HTTP client providers use: timeouts, connection pooling, an SSRF guard,
logging, and typed errors that say whether the request may have reached the provider.

    from hub.providers.http import ProviderHttpError, failure_result, provider_http, read_json

    try:
        response = provider_http().post(url, json=body, allow_private=self.config.allow_private,
                                        timeout=10)
        data = read_json(response)      # UnreadableAnswer when the body is not JSON
    except ProviderHttpError as exc:    # refused, timeout, cut, 5xx, unreadable
        return failure_result(exc, "purchase")

Every :class:`ProviderHttpError` is a *transport failure*: no answer about this request.
:class:`RequestNotSent` (DNS, refused connection, connect timeout, blocked address): nothing
reached the provider. :class:`OutcomeUnknown` (read timeout, connection cut, 5xx, unreadable
body): it may have, and may have acted on it. :func:`failure_result` turns either into the
result the contract asks for (docs/plugins.md, "What each answer means").

The client also notes each transport failure it raises during a provider call
(:func:`watch_transport`), so that the hub marks the call's result as a transport failure
even when a plugin built that result by hand (only transport failures feed a configuration's
shared circuit breaker).
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import structlog

from hub.netguard import DestinationRefused, Guard, Resolver, guarded_client, system_resolver
from hub.providers.contract import ProviderResult, State

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
#: connections per pool: one for each thread that may call at once (the transactions' 128
#: call threads and 64 status-check threads, hub.transactions.calls), every one kept alive
#: for the next batch (a batch's calls go out together, round after round: with 20 kept, the
#: rest of each round connected again, and a pool of 100 held the 101st call back)
CONNECTIONS = 192
_LIMITS = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS, keepalive_expiry=30.0)

log = structlog.get_logger("hub.providers.http")


class ProviderHttpError(Exception):
    """A provider call that got no answer about the request: a transport failure."""

    #: whether the provider may have received the request (and acted on it)
    may_have_been_sent: ClassVar[bool] = True
    #: always True: the provider's transport failed (refused, timeout, cut, 5xx, unreadable);
    #: an answer about the request is a response, never this error
    transport_failure: ClassVar[bool] = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        _note(f"{type(self).__name__}: {self}")


#: the transport failures met during the current provider call (None: no call is watched)
_seen: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("rop_provider_transport", default=None)


@contextlib.contextmanager
def watch_transport() -> Iterator[list[str]]:
    """Collect the transport failures (refused, timeouts, resets, 5xx answers, unreadable
    bodies) the client raises in this thread until the block ends: the hub wraps each provider
    call in it."""
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


class RequestNotSent(ProviderHttpError):
    """The request never reached the provider: nothing can have happened there."""

    may_have_been_sent = False


class OutcomeUnknown(ProviderHttpError):
    """The request may have reached the provider; its outcome is unknown."""


class ProviderServerError(OutcomeUnknown):
    """The provider answered HTTP 5xx: it may have processed the request before failing.
    ``response`` is the answer (its body is rarely the provider's protocol)."""

    def __init__(self, message: str, response: httpx.Response):
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code


class UnreadableAnswer(OutcomeUnknown):
    """The answer's body is not what the protocol says (not JSON, truncated, an HTML page)."""


def read_json(response: httpx.Response) -> Any:
    """The JSON body of ``response``. :raise UnreadableAnswer: when it is not JSON."""
    try:
        return response.json()
    except ValueError as exc:
        raise UnreadableAnswer(f"HTTP {response.status_code}: the body is not JSON: "
                               f"{response.text[:200]!r}") from exc


def failure_result(exc: ProviderHttpError, operation: str) -> ProviderResult:
    """The result of ``operation`` whose call failed on the wire (``transport_failure``).

    A ``purchase`` or ``inquiry`` that was never sent is ``REJECTED`` with
    ``data={"not_sent": True}`` (nothing happened at the provider: the hub may try the next
    one); everything else is ``UNKNOWN``: a purchase that may have been received must be
    settled by a status check of the same reference, and a failed status check or balance
    call tells nothing. (``catalog`` raises :class:`~hub.providers.contract.CatalogUnavailable`
    instead.)
    """
    if operation in ("purchase", "inquiry") and not exc.may_have_been_sent:
        return ProviderResult(State.REJECTED, message=f"not sent: {exc}", data={"not_sent": True},
                              transport_failure=True)
    return ProviderResult(State.UNKNOWN, message=f"no answer: {exc}", transport_failure=True)


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


#: the hub's own addresses (``scheme://host:port/path`` prefixes): a POST under
#: ``<own>/callbacks/`` is the hub calling itself back (the sandbox's callbacks), exempt from
#: the private-address rule. Nothing else is: webhooks and provider endpoints keep the guard.
_own_bases: set[tuple[str, str, int, str]] = set()


def _origin(url: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port, parts.path


def allow_own_callbacks(base_url: str) -> None:
    """Let this process's provider calls reach ``base_url + "/callbacks/…"`` (the hub's own
    callback URLs) even on a private or loopback address (the embedded defaults serve on
    127.0.0.1). :func:`hub.providers.service.callback_url` registers the hub's address."""
    origin = _origin(base_url.rstrip("/"))
    if origin is not None:
        _own_bases.add(origin)


def is_own_callback(url: str) -> bool:
    """True when ``url`` is one of the hub's own callback URLs (:func:`allow_own_callbacks`)."""
    origin = _origin(url)
    if origin is None:
        return False
    scheme, host, port, path = origin
    return any((scheme, host, port) == (s, h, p) and path.startswith(f"{base}/callbacks/") and ".." not in path
               for s, h, p, base in _own_bases)


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
                timeout: float | None = None, server_errors: bool = True, **kwargs: Any) -> httpx.Response:
        """Send one request; ``kwargs`` as ``httpx.Client.request`` (``json=``, ``content=``,
        ``headers=``, ``params=``).

        :param allow_private: allow loopback/private destinations (pass
            ``self.config.allow_private``). The hub's own callback URLs are always allowed
            (:func:`is_own_callback`).
        :param timeout: seconds for the whole call (connect at most 5 s of it).
        :param server_errors: raise :class:`ProviderServerError` for HTTP 5xx (default);
            False returns the response, for the rare protocol whose 5xx bodies mean something.
        :raise RequestNotSent: nothing reached the provider.
        :raise OutcomeUnknown: it may have (read timeout, connection cut, 5xx).
        """
        _http_host(url)
        allow_private = allow_private or is_own_callback(url)
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        try:
            response = self.clients[bool(allow_private)].request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol,
                httpx.InvalidURL, httpx.PoolTimeout) as exc:
            log.info("provider request not sent", method=method, url=url, error=type(exc).__name__)
            raise RequestNotSent(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:  # ReadTimeout, RemoteProtocolError, ReadError, WriteError...
            log.info("provider request without an answer", method=method, url=url, error=type(exc).__name__)
            raise OutcomeUnknown(f"{type(exc).__name__}: {exc}") from exc
        if server_errors and response.status_code >= 500:
            log.info("provider answered a server error", method=method, url=url, status=response.status_code)
            raise ProviderServerError(f"HTTP {response.status_code} from the provider", response)
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
