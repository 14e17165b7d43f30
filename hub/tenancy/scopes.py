"""The scopes of the hub, and the identities of its internal services."""
from __future__ import annotations

#: Scopes a tenant's API client may hold (docs/security.md, "Scopes"). A new client gets all of them unless told.
TENANT_SCOPES: dict[str, str] = {
    "tenant:read": "read the caller's own tenant and its clients",
    "products:read": "list products and this tenant's prices",
    "wallets:read": "read wallets and statements",
    "wallets:write": "create sub-wallets and transfer between them",
    "wallets:topup": "credit a wallet (normally the platform's own finance clients)",
    "transactions:read": "read transactions",
    "transactions:write": "create transactions and inquiries",
    "bulk:read": "read bulk jobs and their results",
    "bulk:write": "submit and cancel bulk jobs",
    "events:read": "read the events feed",
    "webhooks:write": "set the webhook URL",
}

#: Scopes only service clients (the hub's own services) may hold.
SERVICE_ONLY_SCOPES: dict[str, str] = {
    "tenants:act-as": "act for a tenant named in the ROP-On-Behalf-Of header",
    "wallets:hold": "place, capture, void and reverse holds",
    "transactions:process": "drive transactions through their lifecycle",
}

ALL_SCOPES = {**TENANT_SCOPES, **SERVICE_ONLY_SCOPES}

#: Each internal service's own identity: the scopes it holds when it calls another service.
SERVICE_IDENTITIES: dict[str, frozenset[str]] = {
    "transactions": frozenset({"products:read", "wallets:read", "wallets:write", "wallets:hold", "tenants:act-as"}),
    "bulk": frozenset({"products:read", "wallets:read", "transactions:write", "tenants:act-as"}),
    "products": frozenset({"tenants:act-as"}),
    "providers": frozenset({"transactions:process", "tenants:act-as"}),
    "wallets": frozenset({"tenants:act-as"}),
    "bus": frozenset({"events:read", "tenants:act-as"}),
}


def service_client_id(service: str) -> str:
    """The client id of an internal service (``svc_transactions``)."""
    return f"svc_{service}"


def parse_scopes(raw: str | list[str] | tuple[str, ...] | None, *, allow_service: bool = False) -> frozenset[str]:
    """Validate scopes given as a space/comma-separated string or a list.

    :raise ValueError: naming the first unknown scope.
    """
    if raw is None:
        return frozenset(TENANT_SCOPES)
    items = raw.replace(",", " ").split() if isinstance(raw, str) else [s for r in raw for s in r.replace(",", " ").split()]
    allowed = ALL_SCOPES if allow_service else TENANT_SCOPES
    for scope in items:
        if scope not in allowed:
            raise ValueError(f"unknown scope {scope!r}; known: {', '.join(sorted(allowed))}")
    return frozenset(items)
