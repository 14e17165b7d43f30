"""HTTP of the tenancy service: the token endpoint and a tenant's view of itself."""
from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from flask import jsonify, request
from flask.views import MethodView

from hub.auth import check_rate_limit, current_ctx, issue_access_token, requires
from hub.context import CallContext
from hub.db import utcnow
from hub.edge import Blueprint, text_problem
from hub.errors import NotFound, OAuthError, oauth_endpoint
from hub.openapi import OWN_ERRORS
from hub.proxies import rate_key
from hub.scoping import tenant_select
from hub.state import current_state
from hub.tenancy import service
from hub.tenancy.models import ApiClient, Tenant
from hub.tenancy.schemas import (
    ClientListSchema,
    ClientSchema,
    OAuthErrorSchema,
    TenantSchema,
    TokenResponseSchema,
)
from hub.tenancy.scopes import allowed_scopes
from hub.web import request_uow

oauth_bp = Blueprint("oauth", __name__, description="OAuth 2.0 client credentials (RFC 6749 §4.4)")
bp = Blueprint("tenancy", __name__, url_prefix="/v1", description="The caller's own tenant and clients")


def _client_credentials() -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = decoded.partition(":")
        credentials = (unquote(client_id), unquote(secret)) if sep else None
    else:
        client_id, secret = request.form.get("client_id"), request.form.get("client_secret")
        credentials = (client_id, secret) if client_id and secret else None
    for name, value in zip(("client_id", "client_secret"), credentials or ()):
        if why := text_problem(value):
            raise OAuthError(400, "invalid_request", f"the {name} {why}")
    return credentials


def _invalid_client(description: str) -> OAuthError:
    return OAuthError(401, "invalid_client", description, headers={"WWW-Authenticate": 'Basic realm="rop"'})


@oauth_bp.route("/oauth/token", methods=["POST"])
@oauth_endpoint
@oauth_bp.doc(requestBody={"content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["grant_type"],
    "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                   "scope": {"type": "string"}, "client_id": {"type": "string"},
                   "client_secret": {"type": "string"}}}}}}, **{OWN_ERRORS: "own"},
    description="Authenticate with HTTP Basic (client_id:client_secret) or the form fields. Errors are "
                "RFC 6749 bodies: 400 `invalid_request`, `unsupported_grant_type`, `invalid_scope`; 401 "
                "`invalid_client`; 413 `invalid_request` (body too large); 429 `slow_down` with `Retry-After` "
                "(too many token requests from this address or for this client).")
@oauth_bp.response(200, TokenResponseSchema)
@oauth_bp.alt_response(400, schema=OAuthErrorSchema, description="RFC 6749 §5.2 error")
@oauth_bp.alt_response(401, schema=OAuthErrorSchema, description="invalid_client")
@oauth_bp.alt_response(413, schema=OAuthErrorSchema, description="invalid_request: the body is too large")
@oauth_bp.alt_response(429, schema=OAuthErrorSchema, description="slow_down: too many token requests",
                       headers={"Retry-After": {"schema": {"type": "integer"}}})
@oauth_bp.alt_response(503, schema=OAuthErrorSchema, description="temporarily_unavailable")
def token():
    """Issue an access token to an API client.

    Token requests are counted per client address (``ROP_TOKEN_RATE_PER_ADDRESS`` a minute)
    before anything else, and per client (``ROP_TOKEN_RATE_PER_CLIENT``) before its secret is
    checked; an unknown client id is refused without the argon2 verification (docs/security.md).
    """
    limits = current_state().config.limits
    check_rate_limit(rate_key(request.remote_addr), limits.token_per_address, prefix="rop:tokenlimit:address",
                     subject="token requests from this address")
    if request.form.get("grant_type") != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    credentials = _client_credentials()
    if credentials is None:
        raise _invalid_client("client authentication is required")
    uow = request_uow()
    client = service.authenticate_client(
        uow, *credentials,
        before_verify=lambda c: check_rate_limit(c.id, limits.token_per_client, prefix="rop:tokenlimit:client",
                                                 subject="token requests for this client"))
    if client is None:
        raise _invalid_client("unknown client, wrong secret, or client disabled")
    granted = client.scope_set & allowed_scopes(client.kind)  # never more than its kind may hold
    if request.form.get("scope"):
        asked = frozenset(request.form["scope"].split())
        if not asked <= granted:
            raise OAuthError(400, "invalid_scope", f"not granted: {' '.join(sorted(asked - granted))}")
        granted = asked
    state = current_state()
    ttl = state.config.access_token_ttl
    access_token = issue_access_token(state.config.secret_key, client.id, client.tenant_id, granted, ttl,
                                      version=client.token_version or 0)
    client.last_used_at = utcnow()
    uow.commit()
    response = jsonify({"access_token": access_token, "token_type": "Bearer", "expires_in": ttl,
                        "scope": " ".join(sorted(granted))})
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/tenant")
class OwnTenant(MethodView):
    @requires("tenant:read")
    @bp.response(200, TenantSchema)
    def get(self):
        """The caller's tenant."""
        ctx = current_ctx()
        return request_uow().session.execute(
            tenant_select_tenant(ctx)).scalar_one()


def tenant_select_tenant(ctx: CallContext):
    from sqlalchemy import select

    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    return select(Tenant).where(Tenant.id == ctx.tenant_id)


@bp.route("/clients")
class OwnClients(MethodView):
    @requires("tenant:read")
    @bp.response(200, ClientListSchema)
    def get(self):
        """The API clients of the caller's tenant (never their secrets)."""
        ctx = current_ctx()
        rows = request_uow().session.scalars(tenant_select(ctx, ApiClient).order_by(ApiClient.created_at))
        return {"items": list(rows), "next_cursor": None}


@bp.route("/clients/<client_id>")
class OwnClient(MethodView):
    @requires("tenant:read")
    @bp.response(200, ClientSchema)
    def get(self, client_id: str):
        """One API client of the caller's tenant."""
        from hub.scoping import get_owned

        return get_owned(request_uow().session, current_ctx(), ApiClient, client_id)
