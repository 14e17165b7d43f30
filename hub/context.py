"""The CallContext: who is calling, for which tenant, with which scopes.

It is made at the edge (the bearer token of an HTTP request, the envelope of a message,
an admin session, a CLI command) and passed as the first argument of every use-case and
into every message, so that a service never has to guess whose data it is touching.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class CallContext:
    """Who makes a call and on whose behalf.

    :param tenant_id: the tenant whose data the call may touch (None: platform-level).
    :param client_id: the API client (or internal service client) making the call.
    :param scopes: what that client may do.
    :param request_id: the id of the HTTP request or message that started the work.
    :param on_behalf_of: when a service calls another service, the client that
        originated the work (the tenant's own client); None for a direct call.
    :param actor: a human admin's e-mail for admin-UI and CLI actions.
    :param correlation_id: ties every message caused by one request together.
    """

    tenant_id: str | None
    client_id: str | None
    scopes: frozenset[str] = field(default_factory=frozenset)
    request_id: str = field(default_factory=lambda: os.urandom(16).hex())  # 32 hex digits, as uuid4().hex
    on_behalf_of: str | None = None
    actor: str | None = None
    correlation_id: str | None = None

    def has_scope(self, scope: str) -> bool:
        """True when the caller holds ``scope`` (or ``*``, the platform's own superuser scope)."""
        return scope in self.scopes or "*" in self.scopes

    def require_scope(self, scope: str) -> None:
        """:raise hub.errors.Forbidden: when the caller lacks ``scope``."""
        if not self.has_scope(scope):
            from hub.errors import Forbidden

            raise Forbidden(f"this call needs the scope {scope!r}")

    def with_changes(self, **changes: Any) -> "CallContext":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The context as it travels inside a message envelope."""
        return {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "scopes": sorted(self.scopes),
            "request_id": self.request_id,
            "on_behalf_of": self.on_behalf_of,
            "actor": self.actor,
            "correlation_id": self.correlation_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CallContext":
        return cls(
            tenant_id=data.get("tenant_id"),
            client_id=data.get("client_id"),
            scopes=frozenset(data.get("scopes") or ()),
            request_id=data.get("request_id") or os.urandom(16).hex(),
            on_behalf_of=data.get("on_behalf_of"),
            actor=data.get("actor"),
            correlation_id=data.get("correlation_id"),
        )

    @classmethod
    def system(cls, actor: str = "system", tenant_id: str | None = None) -> "CallContext":
        """A context for the platform's own jobs and the operator's CLI (all scopes)."""
        return cls(tenant_id=tenant_id, client_id=None, scopes=frozenset({"*"}), actor=actor)
