"""``rop demo``: a demo tenant, client and admin user — and whatever later services add.

Services add their own seed steps with :func:`register_demo_step`; each step gets the
app, a unit of work, the demo tenant and a dict of lines to print, and must be idempotent.

The database keeps only a hash of the demo client's secret, so the demo keeps the secret in
clear in the instance folder (:data:`SECRET_FILE`, mode 0600): every ``rop demo`` (every
``make run``) prints the same one; it is rotated only when that file is gone or no longer
matches.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
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
#: The demo client's secret in clear, in the instance folder (a demo credential only).
SECRET_FILE = "demo-client-secret"


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def register_demo_step(name: str, step: DemoStep) -> None:
    """Add an idempotent seed step that ``rop demo`` runs after the tenant, client and admin."""
    if all(existing != name for existing, _ in _STEPS):
        _STEPS.append((name, step))


def seed_demo(app) -> dict[str, str]:
    """Create (or refresh) the demo data; return what to print.

    The demo client's secret is kept in the instance folder (:data:`SECRET_FILE`) and
    printed again on every run; it is rotated only when that file is missing or does not
    match. When the admin exists already its password is left alone (use
    ``rop admin set-password``).
    """
    ctx = CallContext.system(actor="cli:demo")
    out: dict[str, str] = {}
    secret_path = Path(app.extensions["rop"].config.instance_path) / SECRET_FILE
    kept = _read_secret(secret_path)
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
        elif kept is not None and client.status == "active" and service.verify_password(client.secret_hash, kept):
            secret = kept
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
    if secret != kept:
        _write_secret(secret_path, secret)
    out["secret_file"] = f"{secret_path} (the same secret on every run; delete it to get a new one)"
    return out
