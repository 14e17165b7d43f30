"""``rop tenants``, ``rop clients``, ``rop admin`` and ``rop demo``."""
from __future__ import annotations

import json
import sys

import click

from hub.cli.base import CliError, app_context, main_group, make_app, operator_name
from hub.context import CallContext
from hub.db import unit_of_work


def _ctx() -> CallContext:
    return CallContext.system(actor=f"cli:{operator_name()}")


def _uow(app):
    return unit_of_work(app.extensions["rop"].db)


@main_group.group()
def tenants() -> None:
    """Tenants: the businesses that transact through the hub."""


@tenants.command("create")
@click.argument("name")
@click.option("--slug", help="URL-safe short name (default: made from NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tenants_create(name: str, slug: str | None, as_json: bool) -> None:
    """Create a tenant."""
    from hub.tenancy.service import create_tenant

    with app_context() as app, _uow(app) as uow:
        tenant = create_tenant(_ctx(), uow, name, slug)
        uow.commit()
        data = {"id": tenant.id, "name": tenant.name, "slug": tenant.slug, "status": tenant.status}
    click.echo(json.dumps(data) if as_json else f"created tenant {data['slug']} ({data['id']})")


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tenants_list(as_json: bool) -> None:
    """List tenants."""
    from hub.tenancy.service import list_tenants

    with app_context() as app, _uow(app) as uow:
        rows = [{"id": t.id, "slug": t.slug, "name": t.name, "status": t.status} for t in list_tenants(uow)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(f"{row['slug']:<24} {row['id']:<30} {row['status']:<9} {row['name']}")


def _set_status(slug: str, status: str) -> None:
    from hub.tenancy.service import set_tenant_status

    with app_context() as app, _uow(app) as uow:
        tenant = set_tenant_status(_ctx(), uow, slug, status)
        uow.commit()
        click.echo(f"tenant {tenant.slug} is {tenant.status}")


@tenants.command("disable", short_help="Disable a tenant: its tokens stop working.")
@click.argument("tenant")
def tenants_disable(tenant: str) -> None:
    """Disable a tenant (by slug or id): its tokens stop working within seconds."""
    _set_status(tenant, "disabled")


@tenants.command("enable")
@click.argument("tenant")
def tenants_enable(tenant: str) -> None:
    """Enable a disabled tenant."""
    _set_status(tenant, "active")


@main_group.group(short_help="API clients of tenants and of the platform.")
def clients() -> None:
    """API clients: client ids and secrets of tenants' systems and of the platform's own."""


@clients.command("create", short_help="Create a client; its secret is printed once.")
@click.option("--tenant", help="Tenant slug or id (a tenant's client).")
@click.option("--platform", is_flag=True,
              help="A platform client: belongs to no tenant, names the tenant it acts for in the "
                   "ROP-On-Behalf-Of header of each call (e.g. --scope wallets:topup for the finance system).")
@click.option("--scope", "scopes", multiple=True,
              help="Scope to grant (repeatable). Default: a tenant's client gets read and purchase "
                   "scopes; a platform client wallets:topup.")
@click.option("--name", default="", help="A label for the client.")
@click.option("--rate-limit", type=click.IntRange(1), default=None, help="Requests per minute.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def clients_create(tenant: str | None, platform: bool, scopes: tuple[str, ...], name: str, rate_limit: int | None,
                   as_json: bool) -> None:
    """Create a client; its secret is printed once and never again."""
    from hub.tenancy.service import create_client

    if platform == bool(tenant):
        raise click.UsageError("give either --tenant SLUG (a tenant's client) or --platform (a platform client)")
    with app_context() as app, _uow(app) as uow:
        client, secret = create_client(_ctx(), uow, tenant, scopes=list(scopes) or None, name=name,
                                       kind="platform" if platform else "tenant",
                                       rate_limit_per_minute=rate_limit)
        uow.commit()
        data = {"client_id": client.id, "client_secret": secret, "tenant_id": client.tenant_id,
                "kind": client.kind, "scopes": sorted(client.scope_set)}
    if as_json:
        click.echo(json.dumps(data))
    else:
        note = "\n(a platform client: send ROP-On-Behalf-Of: <tenant slug or id> on every call)" if platform else ""
        click.echo(f"client_id:     {data['client_id']}\nclient_secret: {secret}\n"
                   f"scopes:        {' '.join(data['scopes'])}\n(the secret is shown once; store it now){note}")


@clients.command("list", short_help="List a tenant's (or the platform's) clients.")
@click.option("--tenant", help="Tenant slug or id.")
@click.option("--platform", is_flag=True, help="The platform clients instead of a tenant's.")
def clients_list(tenant: str | None, platform: bool) -> None:
    """List a tenant's clients, or the platform clients (never their secrets)."""
    from hub.tenancy.service import get_tenant, list_clients

    if platform == bool(tenant):
        raise click.UsageError("give either --tenant SLUG or --platform")
    with app_context() as app, _uow(app) as uow:
        rows = list_clients(uow, None if platform else get_tenant(uow, tenant).id)
        for c in rows:
            click.echo(f"{c.id:<30} {c.status:<8} {c.name or '-':<20} {c.scopes}")


@clients.command("revoke")
@click.argument("client_id")
def clients_revoke(client_id: str) -> None:
    """Revoke a client: its tokens stop working within seconds."""
    from hub.tenancy.service import revoke_client

    with app_context() as app, _uow(app) as uow:
        revoke_client(_ctx(), uow, client_id)
        uow.commit()
    click.echo(f"revoked {client_id}")


@clients.command("rotate-secret", short_help="Give a client a new secret (printed once).")
@click.argument("client_id")
def clients_rotate(client_id: str) -> None:
    """Give a client a new secret (printed once); the old one stops working at once."""
    from hub.tenancy.service import rotate_client_secret

    with app_context() as app, _uow(app) as uow:
        _client, secret = rotate_client_secret(_ctx(), uow, client_id)
        uow.commit()
    click.echo(f"client_secret: {secret}")


@main_group.group("admin")
def admin_group() -> None:
    """Admin-UI users."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@admin_group.command("create-user")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), default="admin", show_default=True)
def admin_create_user(email: str, password_stdin: bool, role: str) -> None:
    """Create an admin-UI login."""
    from hub.tenancy.service import create_admin_user

    password = _read_password(password_stdin)
    with app_context() as app, _uow(app) as uow:
        user = create_admin_user(_ctx(), uow, email, password, role)
        uow.commit()
        click.echo(f"created {user.role} {user.email}")


@admin_group.command("set-password", short_help="Set a password; lifts the lockout, ends sessions.")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def admin_set_password(email: str, password_stdin: bool) -> None:
    """Set an admin user's password, lift a login lockout and end the user's admin sessions."""
    from rop_admin.dashboard import lift_lockout
    from rop_admin.sessions import end_user_sessions

    from hub.tenancy.service import set_admin_password

    password = _read_password(password_stdin)
    with app_context() as app, _uow(app) as uow:
        user = set_admin_password(_ctx(), uow, email, password)
        uow.commit()
        redis = app.extensions["rop"].redis
        # The lockout counter lives in Redis (the admin login's), not in the user's row.
        unlocked = lift_lockout(redis, user.email)
        ended = end_user_sessions(redis, user.id)
    click.echo(f"password set for {user.email}" + ("; login lockout lifted" if unlocked else "")
               + (f"; {ended} session(s) ended" if ended else ""))


@main_group.command(short_help="Seed the demo tenant, client, wallet; print credentials.")
def demo() -> None:
    """Seed a demo tenant, client and admin user (idempotent); print the credentials."""
    from hub.tenancy.demo import seed_demo

    try:
        out = seed_demo(make_app())
    except Exception as exc:
        if exc.__class__.__module__.startswith("sqlalchemy"):
            raise CliError(f"the database is not ready ({type(exc).__name__}); run 'rop db upgrade' first") from exc
        raise
    click.echo("Demo ready:")
    for key, value in out.items():
        click.echo(f"  {key:<14} {value}")
