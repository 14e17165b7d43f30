"""Authentication and authorization at the edge: access tokens, scopes, rate limits.

- ``POST /oauth/token`` (hub.tenancy.api) issues short-lived HS256 JWTs signed with
  ``ROP_SECRET_KEY`` (via joserfc, Authlib's JOSE library).
- :func:`requires` guards every ``/v1`` view: a missing, malformed, expired or tampered
  token, or a revoked client or disabled tenant, answers 401; a missing scope 403; too
  many requests 429 with ``Retry-After``. It builds the :class:`CallContext`.
- The status of a token's client and tenant is re-read from the database at most every
  :data:`STATUS_TTL` seconds per process, so revocation and disabling bite within 5 s. So
  does a secret rotation: a token carries its client's token version (claim ``ver``), which
  every rotation moves on, and a token whose ``tid`` is not its client's tenant is refused.
- A ``platform`` client (the platform's own systems, e.g. its finance back office) belongs
  to no tenant: each call names the tenant it acts for in ``ROP-On-Behalf-Of`` (slug or
  id), else 400; an unknown tenant is 404, a disabled one 403. Its CallContext has that
  tenant and the platform client's id, so what it does is recorded with both.
- A token never carries more scopes than its client's kind may hold
  (:func:`hub.tenancy.scopes.allowed_scopes`): a tenant's client never holds
  ``wallets:topup``, whatever its row or its token says.
- :func:`service_context` is how one service calls another: the callee sees the calling
  service's identity and scopes, the originating tenant, and the originating client.
"""
from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from flask import g, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from sqlalchemy import select

from hub import logging as hub_logging
from hub.availability import REDIS_ERRORS
from hub.context import CallContext
from hub.errors import Forbidden, HubError, NotFound, RateLimited, Unauthorized
from hub.metrics import RATE_LIMIT_UNENFORCED
from hub.redis_scripts import hot_script
from hub.state import current_state
from hub.tenancy.scopes import allowed_scopes

ISSUER = "rop-hub"
STATUS_TTL = 2.0  # seconds a client's status is trusted without a database read (< 5 s)
#: seconds past STATUS_TTL an entry still answers while another thread reads it again
#: (STATUS_TTL + this stays under the 5 s a disabled client may be served at most)
STATUS_RELOAD_GRACE = 1.0
DEFAULT_RATE_LIMIT_PER_MINUTE = 1200
ON_BEHALF_HEADER = "ROP-On-Behalf-Of"
TOKEN_CACHE_SIZE = 10_000  # verified tokens remembered per process

log = structlog.get_logger("hub.auth")


def _key(secret: str) -> OctKey:
    return OctKey.import_key(secret.encode())


def issue_access_token(secret_key: str, client_id: str, tenant_id: str | None, scopes: frozenset[str],
                       ttl: int, now: float | None = None, version: int = 0) -> str:
    """A signed access token for ``client_id`` valid ``ttl`` seconds, under the client's
    token ``version`` (``ApiClient.token_version``: a rotation of its secret ends the token)."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": ISSUER, "sub": client_id, "tid": tenant_id, "scope": " ".join(sorted(scopes)),
              "iat": issued, "exp": issued + ttl, "jti": uuid.uuid4().hex, "ver": version}
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, _key(secret_key))


def decode_access_token(secret_key: str, token: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid token. :raise Unauthorized: for any defect."""
    if not token or token.count(".") != 2:
        raise Unauthorized("the bearer token is malformed", headers=_challenge("invalid_token"))
    try:
        decoded = jwt.decode(token, _key(secret_key), algorithms=["HS256"])
    except (JoseError, ValueError, TypeError):
        raise Unauthorized("the bearer token is not valid", headers=_challenge("invalid_token")) from None
    claims = decoded.claims
    if claims.get("iss") != ISSUER or not claims.get("sub") or not isinstance(claims.get("exp"), int):
        raise Unauthorized("the bearer token is not valid", headers=_challenge("invalid_token"))
    _check_expiry(claims, now)
    return claims


def _check_expiry(claims: dict[str, Any], now: float | None = None) -> None:
    if claims["exp"] <= (now if now is not None else time.time()):
        raise Unauthorized("the bearer token has expired", headers=_challenge("invalid_token"))


class _VerifiedTokens:
    """Per-process memory of tokens whose signature and claims were verified.

    A client sends the same bearer token on every call until it expires; checking its
    HMAC and parsing its JSON again each time is most of what authentication costs. The
    memory is keyed by the exact token string (a changed byte is another key, verified
    from scratch) and by the signing secret; only valid tokens are kept, and expiry is
    still checked on every use. Bounded: full, it starts again empty.
    """

    def __init__(self, size: int = TOKEN_CACHE_SIZE) -> None:
        self.size = size
        self._claims: dict[tuple[str, str], dict[str, Any]] = {}

    def decode(self, secret_key: str, token: str) -> dict[str, Any]:
        key = (secret_key, token)
        claims = self._claims.get(key)
        if claims is None:
            claims = decode_access_token(secret_key, token)
            if len(self._claims) >= self.size:
                self._claims.clear()
            self._claims[key] = claims
        else:
            _check_expiry(claims)
        return claims


def _challenge(error: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="rop"'
    if error:
        value += f', error="{error}"'
    return {"WWW-Authenticate": value}


@dataclass(frozen=True)
class ClientStatus:
    active: bool
    tenant_active: bool
    scopes: frozenset[str]
    kind: str
    rate_limit_per_minute: int | None
    tenant_id: str | None = None
    token_version: int = 0


class _StatusCache:
    """Per-process cache of client status, trusted for :data:`STATUS_TTL` seconds.

    One thread reloads an expired entry; the process's other threads keep answering from the
    entry meanwhile, for :data:`STATUS_RELOAD_GRACE` seconds at most (without it, every
    request thread of a busy process missed at once and each read the same row)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ClientStatus | None]] = {}
        self._loading: set[str] = set()
        self._lock = threading.Lock()

    def get(self, client_id: str, load: Callable[[str], ClientStatus | None]) -> ClientStatus | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(client_id)
            if hit and hit[0] > now:
                return hit[1]
            if hit and client_id in self._loading and hit[0] + STATUS_RELOAD_GRACE > now:
                return hit[1]  # another thread is reading it again
            self._loading.add(client_id)
        try:
            status = load(client_id)
        finally:
            with self._lock:
                self._loading.discard(client_id)
        with self._lock:
            self._entries[client_id] = (now + STATUS_TTL, status)
        return status

    def forget(self, client_id: str | None = None) -> None:
        with self._lock:
            if client_id is None:
                self._entries.clear()
            else:
                self._entries.pop(client_id, None)


def _status_cache() -> _StatusCache:
    extras = current_state().extras
    cache = extras.get("auth_status_cache")
    if cache is None:
        cache = extras.setdefault("auth_status_cache", _StatusCache())
    return cache


def _load_status(client_id: str) -> ClientStatus | None:
    from hub.tenancy.models import ApiClient, Tenant

    with current_state().db.session(readonly=True) as session:
        row = session.execute(
            select(ApiClient, Tenant.status).outerjoin(Tenant, Tenant.id == ApiClient.tenant_id)
            .where(ApiClient.id == client_id)
        ).first()
        if row is None:
            return None
        client, tenant_status = row
        # Never more than the client's kind may hold, whatever its row says (a row written
        # before a scope became platform-only, or by hand): a tenant's client never tops up.
        return ClientStatus(active=client.status == "active",
                            tenant_active=client.tenant_id is None or tenant_status == "active",
                            scopes=client.scope_set & allowed_scopes(client.kind), kind=client.kind,
                            rate_limit_per_minute=client.rate_limit_per_minute,
                            tenant_id=client.tenant_id, token_version=client.token_version or 0)


def _acting_for(ident: str) -> str:
    """The id of the tenant a platform or service client names in ``ROP-On-Behalf-Of``
    (its slug or id). :raise NotFound: no such tenant. :raise Forbidden: it is disabled."""
    from hub.tenancy.models import Tenant

    ident = ident.strip()
    with current_state().db.session(readonly=True) as session:
        row = session.execute(select(Tenant.id, Tenant.status).where(
            (Tenant.id == ident) | (Tenant.slug == ident))).first() if ident else None
    if row is None:
        raise NotFound(f"no tenant {ident!r} (named in {ON_BEHALF_HEADER})")
    if row.status != "active":
        raise Forbidden(f"the tenant {ident!r} named in {ON_BEHALF_HEADER} is disabled")
    return row.id


# -- rate limits --------------------------------------------------------------------------
# A fixed one-minute window per client, counted in Redis so that every web process shares
# it. The count is one Lua call; a view that makes a Redis script call of its own anyway
# may carry the count in it instead (``requires(..., count_in_view=True)``, see
# :class:`RateCount`), so that such a read costs one round trip to Redis, not two.
RATE_COUNT_LUA = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('expire', KEYS[1], ARGV[1]) end
return {n, redis.call('ttl', KEYS[1])}
"""


@dataclass(frozen=True)
class RateCount:
    """One request to count against a limit: Redis ``key`` (expires after ``expire``
    seconds), over the limit past ``limit`` requests in the window of ``window`` seconds;
    ``subject`` names who is counted in the 429's text."""

    client_id: str
    key: str
    limit: int
    expire: int
    window: int
    subject: str = "this client"

    @classmethod
    def now(cls, client_id: str, limit_per_minute: int, window: int = 60, *, prefix: str = "rop:ratelimit",
            subject: str = "this client") -> RateCount:
        slot = int(time.time() // window)
        return cls(client_id, f"{prefix}:{client_id}:{slot}", limit_per_minute, window + 1, window, subject)

    def enforce(self, count: int) -> None:
        """:raise RateLimited: when ``count`` (this request's number in the window) is past the limit."""
        if int(count) > self.limit:
            retry_after = max(1, self.window - int(time.time()) % self.window)
            raise RateLimited(f"at most {self.limit} requests per minute for {self.subject}",
                              headers={"Retry-After": str(retry_after)})


#: After Redis failed a count, the limiter of this process does not ask it again for this
#: many seconds (each request would otherwise wait out a connect timeout, twice).
LIMITER_RETRY_AFTER = 1.0
_LIMITER_LOG_EVERY = 10.0  # seconds between two log lines about unmetered requests


def _limiter_reachable(state) -> bool:
    """False while a recent failure says Redis is away (the request is let through unmetered)."""
    down_until = state.extras.get("auth_limiter_down_until")
    if down_until is None:
        return True
    if time.monotonic() < down_until:
        RATE_LIMIT_UNENFORCED.inc()
        return False
    state.extras.pop("auth_limiter_down_until", None)
    return True


def limiter_unreachable(state, exc: BaseException) -> None:
    """The rate limiter fails open: Redis could not count this request, so it proceeds
    unmetered — counted in ``rop_rate_limit_unenforced_total`` and logged (at most one line
    per :data:`_LIMITER_LOG_EVERY` seconds per process). Redis is not asked again for
    :data:`LIMITER_RETRY_AFTER` seconds."""
    RATE_LIMIT_UNENFORCED.inc()
    now = time.monotonic()
    state.extras["auth_limiter_down_until"] = now + LIMITER_RETRY_AFTER
    if now >= state.extras.get("auth_limiter_logged_at", float("-inf")) + _LIMITER_LOG_EVERY:
        state.extras["auth_limiter_logged_at"] = now
        log.warning("rate limits not enforced: Redis is unreachable; requests proceed unmetered",
                    error=f"{type(exc).__name__}: {exc}"[:300])


def check_rate_limit(client_id: str, limit_per_minute: int, window: int = 60, *, prefix: str = "rop:ratelimit",
                     subject: str = "this client") -> None:
    """Count one request in ``client_id``'s current window (keys under ``prefix``).

    :raise RateLimited: past the limit. Fails open: while Redis is unreachable the request
        proceeds (:func:`limiter_unreachable`)."""
    count = RateCount.now(client_id, limit_per_minute, window, prefix=prefix, subject=subject)
    state = current_state()
    script = hot_script(state.redis, RATE_COUNT_LUA)
    if not _limiter_reachable(state):
        return
    try:
        n, _ttl = script(keys=[count.key], args=[count.expire])
    except REDIS_ERRORS as exc:
        limiter_unreachable(state, exc)
        return
    count.enforce(n)


def take_rate_count() -> RateCount | None:
    """The current request's rate count, for a ``count_in_view`` view to make in its own
    Redis call (then :meth:`RateCount.enforce` its answer). None once taken."""
    return g.pop("_rop_rate_count", None)


# -- the edge -----------------------------------------------------------------------------
def authenticate_request(required: tuple[str, ...], count_in_view: bool = False) -> CallContext:
    """Authenticate the current request's bearer token and build its CallContext.

    The request is counted against the client's rate limit here, or, with
    ``count_in_view``, left for the view to count (:func:`take_rate_count`).
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("this call needs a bearer token from POST /oauth/token", headers=_challenge())
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'",
                           headers=_challenge("invalid_request"))
    state = current_state()
    tokens = state.extras.get("auth_verified_tokens")
    if tokens is None:
        tokens = state.extras.setdefault("auth_verified_tokens", _VerifiedTokens())
    claims = tokens.decode(state.config.secret_key, token.strip())
    client_id = claims["sub"]
    status = _status_cache().get(client_id, _load_status)
    if status is None or not status.active:
        raise Unauthorized("the client of this token is revoked or unknown", headers=_challenge("invalid_token"))
    if not status.tenant_active:
        raise Unauthorized("the tenant of this client is disabled", headers=_challenge("invalid_token"))
    if claims.get("ver", 0) != status.token_version:
        raise Unauthorized("the client's secret was rotated after this token was issued; get a new token",
                           headers=_challenge("invalid_token"))
    if claims.get("tid") != status.tenant_id:
        # Only a token signed with the hub's key gets here: a mismatch is a forgery with a
        # leaked key or a bug, never a client's mistake. Refused, and said so in the log.
        log.warning("token refused: its tenant is not its client's", client_id=client_id,
                    token_tenant=claims.get("tid"), client_tenant=status.tenant_id)
        raise Unauthorized("the bearer token is not valid", headers=_challenge("invalid_token"))
    # A token never carries more than its client holds now (scopes may have been narrowed).
    scopes = frozenset(str(claims.get("scope", "")).split()) & status.scopes
    tenant_id = claims.get("tid") if status.kind == "tenant" else None
    on_behalf_of = None
    acting_for = request.headers.get(ON_BEHALF_HEADER)
    if status.kind == "platform":
        # A platform client belongs to no tenant: every call names the one it acts for.
        if acting_for is None or not acting_for.strip():
            raise HubError(f"a platform client acts for one tenant per call: name it (slug or id) in the "
                           f"{ON_BEHALF_HEADER} header")
        tenant_id = _acting_for(acting_for)
    elif acting_for is not None:
        if status.kind != "service" or "tenants:act-as" not in scopes:
            raise Forbidden(f"only a platform client, or a service client with the scope 'tenants:act-as', "
                            f"may send {ON_BEHALF_HEADER}")
        tenant_id = on_behalf_of = _acting_for(acting_for)
    hub_logging.bind(tenant_id=tenant_id, client_id=client_id)
    limit = status.rate_limit_per_minute or DEFAULT_RATE_LIMIT_PER_MINUTE
    ctx = CallContext(tenant_id=tenant_id, client_id=client_id, scopes=scopes,
                      request_id=g.get("request_id") or uuid.uuid4().hex,
                      on_behalf_of=on_behalf_of, correlation_id=g.get("request_id"))
    if count_in_view:
        g._rop_rate_count = RateCount.now(client_id, limit)
    else:
        check_rate_limit(client_id, limit)
    for scope in required:
        ctx.require_scope(scope)
    return ctx


def requires(*scopes: str, count_in_view: bool = False) -> Callable:
    """Guard a view: a valid bearer token holding every scope in ``scopes``.

    Put it above flask-smorest's decorators so that authentication comes before the
    body is parsed (an anonymous request with a bad body gets 401, not 422).

    ``count_in_view=True`` is for read-only views that call a Redis script first thing:
    they count the request against the rate limit in that call (:func:`take_rate_count`).
    A view that did not take the count has it made when it returns, so no request goes
    uncounted.
    """

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                g.ctx = authenticate_request(scopes, count_in_view=count_in_view)
                return view(*args, **kwargs)
            finally:
                leftover = take_rate_count()
                if leftover is not None:
                    check_rate_limit(leftover.client_id, leftover.limit, leftover.window)

        wrapper._rop_requires = scopes  # type: ignore[attr-defined]
        security = [{"bearerAuth": list(scopes)}]
        apidoc = getattr(wrapper, "_apidoc", {})
        wrapper._apidoc = {**apidoc, "manual_doc": {**apidoc.get("manual_doc", {}), "security": security}}  # type: ignore[attr-defined]
        return wrapper

    return decorator


def current_ctx() -> CallContext:
    """The CallContext of the current request (set by :func:`requires`)."""
    ctx = g.get("ctx")
    if ctx is None:
        raise Unauthorized("no authenticated caller in this request")
    return ctx


def service_context(ctx: CallContext, service: str) -> CallContext:
    """The context a service uses to call another service on ``ctx``'s behalf.

    The callee sees the calling service's client id and scopes, keeps the tenant, and
    learns the originating client from ``on_behalf_of``.
    """
    from hub.tenancy.scopes import SERVICE_IDENTITIES, service_client_id

    if service not in SERVICE_IDENTITIES:
        raise ValueError(f"unknown service {service!r}")
    return CallContext(tenant_id=ctx.tenant_id, client_id=service_client_id(service),
                       scopes=SERVICE_IDENTITIES[service], request_id=ctx.request_id,
                       on_behalf_of=ctx.on_behalf_of or ctx.client_id, actor=ctx.actor,
                       correlation_id=ctx.correlation_id or ctx.request_id)


def require_service_call(ctx: CallContext, scope: str) -> None:
    """For a service's client.py: the caller must be an internal service holding ``scope``
    and acting for a tenant. :raise Forbidden: :raise NotFound: when no tenant is named."""
    from hub.errors import NotFound
    from hub.tenancy.scopes import SERVICE_IDENTITIES, service_client_id

    services = {service_client_id(s) for s in SERVICE_IDENTITIES}
    if ctx.client_id not in services and "*" not in ctx.scopes:
        raise Forbidden(f"only the hub's services may make this call (caller: {ctx.client_id})")
    ctx.require_scope(scope)
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
