"""Marshmallow schemas of the tenancy API."""
from __future__ import annotations

import marshmallow as ma


class TokenResponseSchema(ma.Schema):
    access_token = ma.fields.String(required=True)
    token_type = ma.fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = ma.fields.Integer(required=True)
    scope = ma.fields.String(required=True)


class OAuthErrorSchema(ma.Schema):
    """RFC 6749 §5.2: the token endpoint's errors."""

    error = ma.fields.String(required=True, metadata={"enum": [
        "invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope", "slow_down",
        "server_error", "temporarily_unavailable"]})
    error_description = ma.fields.String(required=True)


class TenantSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    slug = ma.fields.String()
    status = ma.fields.String()
    created_at = ma.fields.DateTime()


class ClientSchema(ma.Schema):
    client_id = ma.fields.String(attribute="id")
    name = ma.fields.String()
    scopes = ma.fields.Method("_scopes")
    status = ma.fields.String()
    rate_limit_per_minute = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()
    last_used_at = ma.fields.DateTime(allow_none=True)

    def _scopes(self, client) -> list[str]:
        return sorted(client.scope_set)


class ClientListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ClientSchema))
    next_cursor = ma.fields.String(allow_none=True)
