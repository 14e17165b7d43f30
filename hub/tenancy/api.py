"""HTTP of the tenancy service: the token endpoint and a tenant's view of itself."""
from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from flask import jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint

from hub.auth import current_ctx, issue_access_token, requires
from hub.context import CallContext
from hub.db import utcnow
from hub.errors import NotFound
from hub.scoping import tenant_select
from hub.state import current_state
from hub.tenancy import service
from hub.tenancy.models import ApiClient, Tenant
from hub.tenancy.schemas import ClientListSchema, ClientSchema, TenantSchema, TokenResponseSchema
from hub.tenancy.scopes import allowed_scopes
from hub.web import request_uow

oauth_bp = Blueprint("oauth", __name__, description="OAuth 2.0 client credentials (RFC 6749 §4.4)")
bp = Blueprint("tenancy", __name__, url_prefix="/v1", description="The caller's own tenant and clients")


def _oauth_error(status: int, error: str, description: str, basic_challenge: bool = False):
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if basic_challenge:
        response.headers["WWW-Authenticate"] = 'Basic realm="rop"'
    return response


def _client_credentials() -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = decoded.partition(":")
        return (unquote(client_id), unquote(secret)) if sep else None
    client_id, secret = request.form.get("client_id"), request.form.get("client_secret")
    return (client_id, secret) if client_id and secret else None


@oauth_bp.route("/oauth/token", methods=["POST"])
@oauth_bp.doc(requestBody={"content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["grant_type"],
    "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                   "scope": {"type": "string"}, "client_id": {"type": "string"},
                   "client_secret": {"type": "string"}}}}}},
    description="Authenticate with HTTP Basic (client_id:client_secret) or the form fields.")
@oauth_bp.response(200, TokenResponseSchema)
def token():
    """Issue an access token to an API client."""
    if request.form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    credentials = _client_credentials()
    if credentials is None:
        return _oauth_error(401, "invalid_client", "client authentication is required", True)
    uow = request_uow()
    client = service.authenticate_client(uow, *credentials)
    if client is None:
        return _oauth_error(401, "invalid_client", "unknown client, wrong secret, or client disabled", True)
    granted = client.scope_set & allowed_scopes(client.kind)  # never more than its kind may hold
    if request.form.get("scope"):
        asked = frozenset(request.form["scope"].split())
        if not asked <= granted:
            return _oauth_error(400, "invalid_scope", f"not granted: {' '.join(sorted(asked - granted))}")
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
