"""The scopes of the hub, who may hold which, and the identities of its internal services.

Three kinds of API client (``ApiClient.kind``):

- ``tenant``: a tenant's own system. It holds only :data:`TENANT_SCOPES`; a new one gets
  :data:`DEFAULT_TENANT_SCOPES` (read and purchase) unless told otherwise.
- ``platform``: one of the platform's own systems (its finance back office). It belongs to
  no tenant, names the tenant it acts for in the ``ROP-On-Behalf-Of`` header on every call,
  and holds only :data:`PLATFORM_CLIENT_SCOPES`: it records money the platform received
  (``wallets:topup``) and may read; it never spends a tenant's money (no purchase, transfer
  or bulk scope).
- ``service``: the hub's own services (:data:`SERVICE_IDENTITIES`), acting in-process.
"""
from __future__ import annotations

#: Scopes a tenant's API client may hold (docs/security.md, "Scopes").
TENANT_SCOPES: dict[str, str] = {
    "tenant:read": "read the caller's own tenant and its clients",
    "products:read": "list products and this tenant's prices",
    "wallets:read": "read wallets and statements",
    "wallets:write": "create sub-wallets and transfer between them",
    "transactions:read": "read transactions",
    "transactions:write": "create transactions and inquiries",
    "bulk:read": "read bulk jobs and their results",
    "bulk:write": "submit and cancel bulk jobs",
    "events:read": "read the events feed",
    "webhooks:write": "set the webhook URL",
}

#: What a tenant's client gets when no scope is named: read, and buy (least privilege).
DEFAULT_TENANT_SCOPES: frozenset[str] = frozenset({
    "tenant:read", "products:read", "wallets:read", "transactions:read", "transactions:write",
    "bulk:read", "events:read"})

#: Scopes only the platform holds: never a tenant's client, whatever it asks for.
PLATFORM_SCOPES: dict[str, str] = {
    "wallets:topup": "record money the platform received for a tenant (a bank transfer): credit its wallet",
}

#: Everything a platform client may hold: the platform scopes and the tenant's read scopes.
PLATFORM_CLIENT_SCOPES: frozenset[str] = frozenset(PLATFORM_SCOPES) | frozenset(
    {"tenant:read", "products:read", "wallets:read", "transactions:read", "bulk:read", "events:read"})

#: What a platform client gets when no scope is named.
DEFAULT_PLATFORM_SCOPES: frozenset[str] = frozenset(PLATFORM_SCOPES)

#: Scopes only service clients (the hub's own services) may hold.
SERVICE_ONLY_SCOPES: dict[str, str] = {
    "tenants:act-as": "act for a tenant named in the ROP-On-Behalf-Of header",
    "wallets:hold": "place, capture, void and reverse holds",
    "transactions:process": "drive transactions through their lifecycle",
}

ALL_SCOPES = {**TENANT_SCOPES, **PLATFORM_SCOPES, **SERVICE_ONLY_SCOPES}

#: The kinds of API client.
CLIENT_KINDS = ("tenant", "platform", "service")

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


def allowed_scopes(kind: str) -> frozenset[str]:
    """Every scope a client of ``kind`` may hold (a token never carries more, whatever the
    client's row says)."""
    if kind == "tenant":
        return frozenset(TENANT_SCOPES)
    if kind == "platform":
        return PLATFORM_CLIENT_SCOPES
    if kind == "service":  # the hub's services hold no platform scope: none records money received
        return frozenset(TENANT_SCOPES) | frozenset(SERVICE_ONLY_SCOPES)
    return frozenset()


def default_scopes(kind: str) -> frozenset[str]:
    """What a new client of ``kind`` gets when no scope is named."""
    return DEFAULT_PLATFORM_SCOPES if kind == "platform" else DEFAULT_TENANT_SCOPES


def parse_scopes(raw: str | list[str] | tuple[str, ...] | None, *, kind: str = "tenant") -> frozenset[str]:
    """Validate scopes given as a space/comma-separated string or a list, for a client of
    ``kind``; None gives :func:`default_scopes`.

    :raise ValueError: naming the first scope that does not exist or that a ``kind`` client
        may not hold.
    """
    if raw is None:
        return default_scopes(kind)
    items = raw.replace(",", " ").split() if isinstance(raw, str) else [s for r in raw for s in r.replace(",", " ").split()]
    allowed = allowed_scopes(kind)
    for scope in items:
        if scope not in ALL_SCOPES:
            raise ValueError(f"unknown scope {scope!r}; known: {', '.join(sorted(allowed))}")
        if scope not in allowed:
            who = {"tenant": "a tenant's client", "platform": "a platform client"}.get(kind, f"a {kind} client")
            raise ValueError(f"{who} may not hold the scope {scope!r}; allowed: {', '.join(sorted(allowed))}")
    return frozenset(items)
