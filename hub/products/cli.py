"""``rop catalog`` (sync, list, history) and ``rop pricing`` (the platform price list and tenant rules)."""
from __future__ import annotations

import json
from typing import Any

import click

from hub.cli.base import CliError, app_context, main_group, operator_context, tenant_id_for
from hub.db import unit_of_work


def _tenant_id(uow, slug: str | None) -> str | None:
    return None if slug is None else tenant_id_for(uow, slug)


def _dump(data: Any) -> str:
    return json.dumps(data, default=str)


@main_group.group()
def catalog() -> None:
    """The product catalog: sync it from the providers, look at it."""


@catalog.command("sync", short_help="Pull the providers' catalogs and upsert offers.")
@click.option("--provider", "provider_code", help="Only the configurations of this provider code.")
@click.option("--config", "config_id", help="Only this provider configuration id.")
@click.option("--allow-empty", is_flag=True, help="Accept an empty catalog (marks every offer of it vanished).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def catalog_sync(provider_code: str | None, config_id: str | None, allow_empty: bool, as_json: bool) -> None:
    """Pull each provider's catalog and upsert its offers (each configuration all or nothing)."""
    from hub.products.sync import sync_config, syncable_configs

    with app_context() as app:
        db = app.extensions["rop"].db

        def units():
            return unit_of_work(db)

        if config_id:
            targets = [config_id]
        else:
            targets = [c["config_id"] for c in syncable_configs(units, provider_code)]
            if not targets:
                raise CliError("no enabled provider configuration with a catalog"
                               + (f" for provider {provider_code!r}" if provider_code else ""))
        reports = [sync_config(operator_context(), units, target, allow_empty=allow_empty) for target in targets]
    if as_json:
        click.echo(_dump(reports))
    else:
        for r in reports:
            line = (f"{r['config_id']} {r['provider_code']}: {r['status']}, {r['items']} items, "
                    f"{r['created']} created, {r['changed']} changed, {r['vanished']} vanished")
            click.echo(line + (f" — {r['error']}" if r["error"] else ""))
    _warn_without_rule()
    failed = [r for r in reports if r["status"] != "succeeded"]
    if failed:
        raise CliError(f"{len(failed)} of {len(reports)} catalog syncs failed; nothing of those was applied")


def _warn_without_rule(tenant_slug: str | None = None) -> list[str]:
    """Say on stderr which products no price rule prices (they sell at cost); return their codes."""
    from hub.products import rules

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        codes = rules.without_rule(operator_context(), uow, tenant_id=_tenant_id(uow, tenant_slug))
    if codes:
        shown = ", ".join(codes[:10]) + (f" and {len(codes) - 10} more" if len(codes) > 10 else "")
        whose = f"no price rule of the platform or of {tenant_slug}" if tenant_slug else "no platform price rule"
        click.echo(f"rop: warning: {len(codes)} product(s) on sale have {whose} and sell at cost: {shown}; "
                   "set one with 'rop pricing set' (e.g. 'rop pricing set markup_percent 200': cost + 2 %)",
                   err=True)
    return codes


@catalog.command("list")
@click.option("--tenant", "tenant_slug", required=True, help="Show this tenant's prices (slug or id).")
@click.option("--category")
@click.option("--q", "query", help="Search the code and name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def catalog_list(tenant_slug: str, category: str | None, query: str | None, as_json: bool) -> None:
    """The catalog as a tenant sees it (its prices, availability)."""
    from hub.products import service

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        ctx = operator_context().with_changes(tenant_id=_tenant_id(uow, tenant_slug))
        items, cursor = service.list_products(ctx, uow, category=category, q=query, limit=500)
        while cursor:
            more, cursor = service.list_products(ctx, uow, category=category, q=query, limit=500, cursor=cursor)
            items += more
    at_cost = set(_warn_without_rule(tenant_slug))
    for p in items:
        p["at_cost"] = p["price"] is not None and p["code"] in at_cost
    if as_json:
        click.echo(_dump(items))
        return
    for p in items:
        price = "-" if p["price"] is None else f"{p['price']:,}"
        click.echo(f"{p['code']:<16} {p['name'][:40]:<40} {p['category']:<8} {price:>12} {p['currency']} "
                   f"{'active' if p['active'] else 'unavailable'}"
                   + ("  at cost: no price rule" if p["at_cost"] else ""))


@catalog.command("history", short_help="A product's history: cost, status, offers.")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def catalog_history(code: str, as_json: bool) -> None:
    """A product's history: creation, cost and status changes, offers added and vanished."""
    from hub.products import operators

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = operators.product_history(operator_context(), uow, code)
    if as_json:
        click.echo(_dump(rows))
        return
    for r in rows:
        click.echo(f"{r['changed_at']:%Y-%m-%d %H:%M:%S} {r['field']:<13} {r['old_value'] or '-'} -> "
                   f"{r['new_value'] or '-'}  ({r['actor'] or ''}{' sync ' + r['sync_id'] if r['sync_id'] else ''})")


@main_group.group(short_help="Price rules: the platform's and each tenant's.")
def pricing() -> None:
    """Price rules: the platform price list and each tenant's own rules."""


_KINDS = click.Choice(["markup_percent", "markup_fixed", "fixed_price"])


def _target(product: str | None, category: str | None) -> str:
    from hub.products.pricing import target_for

    try:
        return target_for(product, category)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


# A negative VALUE (a discount: markup_percent -500) is an argument, not an unknown option.
@pricing.command("set", short_help="Set a price rule (markup or fixed price).",
                 context_settings={"ignore_unknown_options": True})
@click.option("--tenant", "tenant_slug", help="The tenant (slug or id); default: the platform price list.")
@click.option("--product", help="A product code.")
@click.option("--category", help="A category code.")
@click.argument("kind", type=_KINDS)
@click.argument("value", type=int)
def pricing_set(tenant_slug: str | None, product: str | None, category: str | None, kind: str, value: int) -> None:
    """Set a rule: KIND markup_percent (VALUE in basis points, 250 = 2.5 %), markup_fixed or
    fixed_price (VALUE in minor units), for a product, a category, or everything."""
    from hub.products import rules

    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        rule = rules.set_rule(operator_context(), uow, tenant_id=_tenant_id(uow, tenant_slug),
                              target=_target(product, category), kind=kind, value=value)
        uow.commit()
    click.echo(f"{rule['tenant_id'] or 'platform'} {rule['target']}: {rule['kind']} {rule['value']}")


@pricing.command("remove")
@click.option("--tenant", "tenant_slug", help="The tenant (slug or id); default: the platform price list.")
@click.option("--product", help="A product code.")
@click.option("--category", help="A category code.")
def pricing_remove(tenant_slug: str | None, product: str | None, category: str | None) -> None:
    """Remove a rule (its history stays)."""
    from hub.products import rules

    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        rules.remove_rule(operator_context(), uow, tenant_id=_tenant_id(uow, tenant_slug),
                          target=_target(product, category))
        uow.commit()
    click.echo("removed")


@pricing.command("list")
@click.option("--tenant", "tenant_slug", help="The tenant (slug or id); default: the platform price list.")
@click.option("--all", "everyone", is_flag=True, help="Every rule of every tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pricing_list(tenant_slug: str | None, everyone: bool, as_json: bool) -> None:
    """List rules."""
    from hub.products import rules

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        found = rules.list_rules(operator_context(), uow, tenant_id=_tenant_id(uow, tenant_slug), everyone=everyone)
    if as_json:
        click.echo(_dump(found))
        return
    for r in found:
        click.echo(f"{r['tenant_id'] or 'platform':<30} {r['target']:<24} {r['kind']:<15} {r['value']}")


@pricing.command("explain", short_help="How a tenant's price of a product is made.")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant (slug or id).")
@click.argument("code")
def pricing_explain(tenant_slug: str, code: str) -> None:
    """How a tenant's price of one product is made: cost, base price, rules."""
    from hub.products import rules

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        click.echo(_dump(rules.explain_price(operator_context(), uow, tenant_id=_tenant_id(uow, tenant_slug),
                                             product_code=code)))
