"""``rop demo``: a demo tenant, client and admin user — and whatever later services add.

Services add their own seed steps with :func:`register_demo_step`; each step gets the
app, a unit of work, the demo tenant and a dict of lines to print, and must be idempotent.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from hub.context import CallContext
from hub.db import unit_of_work
from hub.tenancy import service
from hub.tenancy.models import AdminUser, ApiClient, Tenant
from hub.tenancy.scopes import TENANT_SCOPES

DemoStep = Callable[[Any, Any, Tenant, dict[str, str]], None]
_STEPS: list[tuple[str, DemoStep]] = []

DEMO_SLUG = "demo"
DEMO_ADMIN = "admin@example.com"
DEMO_CLIENT_NAME = "demo client"


def register_demo_step(name: str, step: DemoStep) -> None:
    """Add an idempotent seed step that ``rop demo`` runs after the tenant, client and admin."""
    if all(existing != name for existing, _ in _STEPS):
        _STEPS.append((name, step))


def seed_demo(app) -> dict[str, str]:
    """Create (or refresh) the demo data; return what to print.

    Secrets are never stored in clear, so each run issues the demo client a fresh secret
    and, when the admin exists already, leaves its password alone (use
    ``rop admin set-password``).
    """
    ctx = CallContext.system(actor="cli:demo")
    out: dict[str, str] = {}
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        service.ensure_service_clients(uow)
        tenant = uow.session.scalar(select(Tenant).where(Tenant.slug == DEMO_SLUG))
        if tenant is None:
            tenant = service.create_tenant(ctx, uow, "Demo Tenant", DEMO_SLUG)
        client = uow.session.scalar(select(ApiClient).where(ApiClient.tenant_id == tenant.id,
                                                            ApiClient.name == DEMO_CLIENT_NAME))
        if client is None:
            # Every scope a tenant's client may hold, to try the whole tenant API (top-ups
            # are not among them: only the platform records money received).
            client, secret = service.create_client(ctx, uow, tenant.id, name=DEMO_CLIENT_NAME,
                                                   scopes=sorted(TENANT_SCOPES))
        else:
            client, secret = service.rotate_client_secret(ctx, uow, client.id)
        out["tenant"] = f"{tenant.name} (slug {tenant.slug}, id {tenant.id})"
        out["client_id"] = client.id
        out["client_secret"] = secret
        if uow.session.scalar(select(AdminUser).where(AdminUser.email == DEMO_ADMIN)) is None:
            password = secrets.token_urlsafe(12)
            service.create_admin_user(ctx, uow, DEMO_ADMIN, password, role="admin")
            out["admin"] = f"{DEMO_ADMIN} / {password}"
        else:
            out["admin"] = f"{DEMO_ADMIN} (exists; rop admin set-password {DEMO_ADMIN} to change it)"
        for _name, step in _STEPS:
            step(app, uow, tenant, out)
        uow.commit()
    return out
