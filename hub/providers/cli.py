"""``rop providers list|show|add|remove|check|enable|disable|set-credentials|balance|rotate-keys``."""
from __future__ import annotations

import json
import sys

import click

from hub.cli.base import CliError, app_context, main_group


def _uow(app):
    from hub.db import unit_of_work

    return unit_of_work(app.extensions["rop"].db)


def _read_json(text: str | None, what: str) -> dict:
    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{what} must be a JSON object")
    return data


@main_group.group("providers", short_help="Provider configurations (credentials never shown).")
def providers_group() -> None:
    """Provider configurations (credentials are never shown in clear)."""


@providers_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """Installed providers and every configuration."""
    from hub.providers import service
    from hub.providers.contract import describe

    with app_context() as app, _uow(app) as uow:
        host = app.extensions["rop"].extras["plugins"]
        rows = [service.masked(r) for r in service.list_configs(uow)]
        providers = [describe(cls) for cls in host.providers.values()]
    if as_json:
        click.echo(json.dumps({"providers": providers, "configurations": rows}, indent=2, default=str))
        return
    for p in providers:
        click.echo(f"provider {p['code']:<12} {p['name']} {p['version']} [{','.join(p['capabilities'])}]; "
                   f"settings: {', '.join(p['settings']) or 'none'}; credentials: {', '.join(p['credentials']) or 'none'}")
    for r in rows:
        state = {"on": "on ", "off": "OFF"}.get(r["state"], r["state"])
        click.echo(f"{r['id']}  {r['provider_code']:<12} {state} "
                   f"tenant={r['tenant_id'] or '*'} {r['name']} credentials={r['credentials']}")


@providers_group.command("show")
@click.argument("config_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_cmd(config_id: str, as_json: bool) -> None:
    """Show a configuration and its callback URL.

    Credentials are masked; the state is on, off (the kill switch) or retired; the callback
    URL is the one to give the provider."""
    from hub.cli.base import operator_context
    from hub.providers import service
    from hub.transactions.client import in_flight_by_config

    with app_context() as app, _uow(app) as uow:
        row = service.get_config(uow, config_id)
        shown = service.masked(row)
        cls = app.extensions["rop"].extras["plugins"].providers.get(row.provider_code)
        shown["in_flight"] = in_flight_by_config(operator_context(), uow, [config_id])[config_id]
        shown["history"] = service.config_history(operator_context(), uow, config_id)
    if as_json:
        click.echo(json.dumps(shown, indent=2, default=str))
        return
    url = shown["callback_url"] or "unknown: set ROP_PUBLIC_URL (the hub's address as providers reach it)"
    callbacks = cls is not None and "callbacks" in {c.value for c in cls.capabilities}
    lines = [("id", shown["id"]), ("provider", shown["provider_code"] + ("" if cls else " (not installed)")),
             ("name", shown["name"]),
             ("tenant", shown["tenant_id"] or ("all tenants" if shown["all_tenants"] else "selected tenants")),
             ("state", shown["state"] + (f" since {shown['retired_at']}" if shown["retired_at"] else "")),
             ("in flight", f"{shown['in_flight']} purchase(s)"),
             ("history", ", ".join(f"{n} {k}" for k, n in shown["history"].items())),
             ("settings", json.dumps(shown["settings"], sort_keys=True)),
             ("credentials", json.dumps(shown["credentials"], sort_keys=True)),
             ("callback URL", url if callbacks else f"{url} (this provider sends no callbacks)")]
    for label, value in lines:
        click.echo(f"{label + ':':<14}{value}")


@providers_group.command("remove")
@click.argument("config_id")
def remove_cmd(config_id: str) -> None:
    """Delete a configuration, or retire one with history.

    Audited. One with history (purchases, inquiries, callbacks) is retired, not deleted: no new purchase goes to it, while purchases already sent there keep
    their status checks and callbacks. One without history is deleted."""
    from hub.cli.base import operator_context
    from hub.providers import service

    with app_context() as app, _uow(app) as uow:
        action, history = service.remove_config(operator_context(), uow, config_id)
        uow.commit()
    if action == "deleted":
        click.echo(f"{config_id} deleted (it had no history)")
    else:
        click.echo(f"{config_id} retired, not deleted: it has history ("
                   + ", ".join(f"{n} {k}" for k, n in history.items() if n)
                   + "); no new purchase goes to it, purchases already sent keep their status checks and callbacks")


@providers_group.command("add")
@click.argument("provider_code")
@click.option("--name", required=True)
@click.option("--tenant", "tenant_id", default=None, help="A tenant's own configuration (its slug or id).")
@click.option("--settings", default=None, help="JSON object.")
@click.option("--credentials", default=None, help="JSON object, or - to read it from stdin.")
@click.option("--disabled", is_flag=True)
def add_cmd(provider_code, name, tenant_id, settings, credentials, disabled) -> None:
    """Add a provider configuration; print its id.

    When the provider signs its callbacks and --credentials does not give the secret, the hub
    generates one and prints it once on standard error, with the callback URL, for you to
    give the provider (the sandbox needs nothing: it signs with it itself).
    """
    from hub.providers import service

    given = _read_json(credentials, "--credentials")
    with app_context() as app, _uow(app) as uow:
        row = service.add_config(uow, provider_code, name, settings=_read_json(settings, "--settings"),
                                 credentials=given, tenant_id=tenant_id, enabled=not disabled)
        uow.commit()
        setting = app.extensions["rop"].extras["plugins"].provider_class(provider_code).callback_secret_setting
        generated = service.callback_secret(row) if setting and not given.get(setting) else None
        url = service.callback_url(row) or "unknown: set ROP_PUBLIC_URL"
        click.echo(row.id)
        if generated:
            click.echo(f"generated callback secret ({setting}, shown once): {generated}\n"
                       f"callback URL: {url}", err=True)


@providers_group.command("set-credentials", short_help="Replace a configuration's credentials.")
@click.argument("config_id")
@click.option("--credentials", default="-", show_default=True, help="JSON object, - for stdin.")
def set_credentials_cmd(config_id, credentials) -> None:
    """Replace a configuration's credentials (read from stdin by default)."""
    from hub.providers import service

    with app_context() as app, _uow(app) as uow:
        row = service.set_credentials(uow, config_id, _read_json(credentials, "credentials"))
        uow.commit()
        click.echo(json.dumps(service.masked(row)["credentials"]))


@providers_group.command("enable")
@click.argument("config_id")
@click.option("--tenant", "tenant_id", default=None, help="Enable for this tenant only (its slug or id).")
def enable_cmd(config_id, tenant_id) -> None:
    """Switch a configuration on (or enable it for one tenant)."""
    from hub.providers import service

    with app_context() as app, _uow(app) as uow:
        if tenant_id:
            tenant_id = service.enable_for_tenant(uow, config_id, tenant_id, True)
        else:
            service.set_enabled(uow, config_id, True)
        uow.commit()
    click.echo(f"{config_id} enabled" + (f" for {tenant_id}" if tenant_id else ""))


@providers_group.command("disable", short_help="Kill switch: send no new purchase to it.")
@click.argument("config_id")
@click.option("--tenant", "tenant_id", default=None, help="Disable for this tenant only (its slug or id).")
def disable_cmd(config_id, tenant_id) -> None:
    """The kill switch: no new purchase goes to a configuration (or, with --tenant, none of that
    tenant's) from now on. Purchases already in flight there (counted) keep their status
    checks and callbacks."""
    from hub.cli.base import operator_context
    from hub.providers import service
    from hub.transactions.client import in_flight_by_config

    with app_context() as app, _uow(app) as uow:
        if tenant_id:
            tenant_id = service.enable_for_tenant(uow, config_id, tenant_id, False)
        else:
            service.set_enabled(uow, config_id, False)
        in_flight = in_flight_by_config(operator_context(), uow, [config_id], tenant_id=tenant_id)[config_id]
        uow.commit()
    click.echo(f"{config_id} disabled" + (f" for {tenant_id}" if tenant_id else "")
               + f": no new purchase goes to it; {in_flight} purchase(s) in flight there keep their status "
                 "checks and callbacks")


@providers_group.command("balance")
@click.argument("config_id")
def balance_cmd(config_id) -> None:
    """The hub's deposit at the provider."""
    from hub.providers import client

    with app_context() as app, _uow(app) as uow:
        result = client.balance(uow, config_id)
        uow.commit()
    if result.state.value != "success":
        raise CliError(f"balance: {result.state.value}: {result.message}")
    click.echo(f"{result.cost}")


@providers_group.command("check", short_help="Check a configuration live, end to end.")
@click.argument("config_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check_cmd(config_id: str, as_json: bool) -> None:
    """Check a configuration live: provider installed, reachable, credentials accepted, catalog
    readable, balance (what the provider declares). Exits 1 when a check fails. Never buys."""
    from hub.providers.live_check import check_config

    with app_context() as app, _uow(app) as uow:
        lines = check_config(uow, config_id)
    if as_json:
        click.echo(json.dumps([line.as_dict() for line in lines], indent=2))
    else:
        for line in lines:
            click.echo(f"{line.status:<8} {line.name:<22} {line.detail}".rstrip())
    failed = [line.name for line in lines if line.status == "failed"]
    if failed:
        raise CliError(f"{config_id}: {', '.join(failed)} failed")


@providers_group.command("rotate-keys", short_help="Re-encrypt credentials under the newest key.")
def rotate_keys_cmd() -> None:
    """Re-encrypt every configuration's credentials under the newest ROP_ENCRYPTION_KEYS key."""
    from hub.providers import service

    with app_context() as app, _uow(app) as uow:
        count = service.rotate_keys(uow)
        uow.commit()
    click.echo(f"re-encrypted {count} configuration(s)")
