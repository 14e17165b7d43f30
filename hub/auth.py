"""Authentication and authorization at the edge: access tokens, scopes, rate limits.

- ``POST /oauth/token`` (hub.tenancy.api) issues short-lived HS256 JWTs signed with
  ``ROP_SECRET_KEY`` (via joserfc, Authlib's JOSE library).
- :func:`requires` guards every ``/v1`` view: a missing, malformed, expired or tampered
  token, or a revoked client or disabled tenant, answers 401; a missing scope 403; too
  many requests 429 with ``Retry-After``. It builds the :class:`CallContext`.
- The status of a token's client and tenant is re-read from the database at most every
  :data:`STATUS_TTL` seconds per process, so revocation and disabling bite within 5 s.
- :func:`service_context` is how one service calls another: the callee sees the calling
  service's identity and scopes, the originating tenant, and the originating client.
"""
from __future__ import annotations

import functools
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from flask import g, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from sqlalchemy import select

from hub import logging as hub_logging
from hub.context import CallContext
from hub.errors import Forbidden, RateLimited, Unauthorized
from hub.state import current_state

ISSUER = "rop-hub"
STATUS_TTL = 2.0  # seconds a client's status is trusted without a database read (< 5 s)
DEFAULT_RATE_LIMIT_PER_MINUTE = 1200
ON_BEHALF_HEADER = "ROP-On-Behalf-Of"


def _key(secret: str) -> OctKey:
    return OctKey.import_key(secret.encode())


def issue_access_token(secret_key: str, client_id: str, tenant_id: str | None, scopes: frozenset[str],
                       ttl: int, now: float | None = None) -> str:
    """A signed access token for ``client_id`` valid ``ttl`` seconds."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": ISSUER, "sub": client_id, "tid": tenant_id, "scope": " ".join(sorted(scopes)),
              "iat": issued, "exp": issued + ttl, "jti": uuid.uuid4().hex}
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
    current = now if now is not None else time.time()
    if claims.get("iss") != ISSUER or not claims.get("sub") or not isinstance(claims.get("exp"), int):
        raise Unauthorized("the bearer token is not valid", headers=_challenge("invalid_token"))
    if claims["exp"] <= current:
        raise Unauthorized("the bearer token has expired", headers=_challenge("invalid_token"))
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


class _StatusCache:
    """Per-process cache of client status, trusted for :data:`STATUS_TTL` seconds."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ClientStatus | None]] = {}
        self._lock = threading.Lock()

    def get(self, client_id: str, load: Callable[[str], ClientStatus | None]) -> ClientStatus | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(client_id)
        if hit and hit[0] > now:
            return hit[1]
        status = load(client_id)
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
        return ClientStatus(active=client.status == "active",
                            tenant_active=client.tenant_id is None or tenant_status == "active",
                            scopes=client.scope_set, kind=client.kind,
                            rate_limit_per_minute=client.rate_limit_per_minute)


def _tenant_active(tenant_id: str) -> bool:
    from hub.tenancy.models import Tenant

    with current_state().db.session(readonly=True) as session:
        return session.scalar(select(Tenant.status).where(Tenant.id == tenant_id)) == "active"


# -- rate limits --------------------------------------------------------------------------
_RATE_SCRIPT = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('expire', KEYS[1], ARGV[1]) end
local ttl = redis.call('ttl', KEYS[1])
return {n, ttl}
"""


def check_rate_limit(client_id: str, limit_per_minute: int, window: int = 60) -> None:
    """Count one request in the client's current window. :raise RateLimited: past the limit."""
    slot = int(time.time() // window)
    key = f"rop:ratelimit:{client_id}:{slot}"
    count, ttl = current_state().redis.eval(_RATE_SCRIPT, 1, key, window + 1)
    if int(count) > limit_per_minute:
        retry_after = max(1, window - int(time.time()) % window)
        raise RateLimited(f"at most {limit_per_minute} requests per minute for this client",
                          headers={"Retry-After": str(retry_after)})


# -- the edge -----------------------------------------------------------------------------
def authenticate_request(required: tuple[str, ...]) -> CallContext:
    """Authenticate the current request's bearer token and build its CallContext."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("this call needs a bearer token from POST /oauth/token", headers=_challenge())
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'",
                           headers=_challenge("invalid_request"))
    state = current_state()
    claims = decode_access_token(state.config.secret_key, token.strip())
    client_id = claims["sub"]
    status = _status_cache().get(client_id, _load_status)
    if status is None or not status.active:
        raise Unauthorized("the client of this token is revoked or unknown", headers=_challenge("invalid_token"))
    if not status.tenant_active:
        raise Unauthorized("the tenant of this client is disabled", headers=_challenge("invalid_token"))
    # A token never carries more than its client holds now (scopes may have been narrowed).
    scopes = frozenset(str(claims.get("scope", "")).split()) & status.scopes
    tenant_id = claims.get("tid")
    on_behalf_of = None
    acting_for = request.headers.get(ON_BEHALF_HEADER)
    if acting_for is not None:
        if status.kind != "service" or "tenants:act-as" not in scopes:
            raise Forbidden(f"only a service client with the scope 'tenants:act-as' may send {ON_BEHALF_HEADER}")
        if not _tenant_active(acting_for):
            raise Unauthorized(f"the tenant in {ON_BEHALF_HEADER} is unknown or disabled",
                               headers=_challenge("invalid_token"))
        tenant_id, on_behalf_of = acting_for, acting_for
    hub_logging.bind(tenant_id=tenant_id, client_id=client_id)
    check_rate_limit(client_id, status.rate_limit_per_minute or DEFAULT_RATE_LIMIT_PER_MINUTE)
    ctx = CallContext(tenant_id=tenant_id, client_id=client_id, scopes=scopes,
                      request_id=g.get("request_id") or uuid.uuid4().hex,
                      on_behalf_of=on_behalf_of, correlation_id=g.get("request_id"))
    for scope in required:
        ctx.require_scope(scope)
    return ctx


def requires(*scopes: str) -> Callable:
    """Guard a view: a valid bearer token holding every scope in ``scopes``.

    Put it above flask-smorest's decorators so that authentication comes before the
    body is parsed (an anonymous request with a bad body gets 401, not 422).
    """

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.ctx = authenticate_request(scopes)
            return view(*args, **kwargs)

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
