"""``rop wallets``: top up, list, verify."""
from __future__ import annotations

import json
import uuid

import click

from hub.cli.base import CliError, app_context, main_group, tenant_context
from hub.db import unit_of_work


@main_group.group()
def wallets() -> None:
    """Wallets: balances, top-ups and the ledger check."""


@wallets.command("topup", short_help="Record money received for a tenant.")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.argument("amount", type=int)
@click.option("--wallet", "wallet_id", help="The wallet id (default: the tenant's main wallet).")
@click.option("--ref", "ref_id", help="Idempotency reference, e.g. the bank transfer's (default: a new one).")
@click.option("--reason", required=True, help="Why: the money received (bank, statement line); in the audit log.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def wallets_topup(tenant_slug: str, amount: int, wallet_id: str | None, ref_id: str | None, reason: str,
                  as_json: bool) -> None:
    """Record AMOUNT (minor units) the platform received for a tenant: a ledger posting
    from its funding account, audited with the operator and the reason."""
    from hub.wallets import service

    if amount <= 0:
        raise CliError("AMOUNT must be a positive integer (minor units)")
    if not reason.strip():
        raise CliError("--reason must say why (the money received)")
    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        ctx = tenant_context(uow, tenant_slug)
        result = service.topup(ctx, uow, wallet_id, amount, ref_id or f"cli-{uuid.uuid4().hex}", reason=reason)
        wallet = service.get_wallet(ctx, uow, result["wallet_id"])
        uow.commit()
        result["available"] = wallet.available
    if as_json:
        click.echo(json.dumps(result))
    else:
        note = " (replayed: that ref was already applied)" if result["replayed"] else ""
        click.echo(f"topped up {result['wallet_id']} by {amount} {result['currency']}; "
                   f"available {result['available']}{note}")


@wallets.command("list")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def wallets_list(tenant_slug: str, as_json: bool) -> None:
    """List a tenant's wallets and balances."""
    from hub.wallets import service
    from hub.wallets.client import wallet_view

    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        ctx = tenant_context(uow, tenant_slug)
        rows, _cursor = service.list_wallets(ctx, uow, limit=10_000)
        data = [wallet_view(w) for w in rows]
        uow.commit()
    if as_json:
        click.echo(json.dumps(data))
        return
    for w in data:
        label = "main" if w["is_main"] else w["owner_ref"]
        click.echo(f"{w['id']:<30} {label:<24} {w['currency']} available={w['available']} held={w['held']}")


@wallets.command("verify", short_help="Recompute every balance; exit 1 on a difference.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def wallets_verify(as_json: bool) -> None:
    """Recompute every balance from the entries; exit 1 on any difference."""
    from hub.wallets import service

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        report = service.verify_ledger(uow)
    if as_json:
        click.echo(json.dumps(report))
    else:
        for diff in report["differences"]:
            click.echo("difference: " + " ".join(f"{k}={v}" for k, v in diff.items()))
        click.echo(f"{'ok' if report['ok'] else 'MISMATCH'}: {report['wallets']} wallets, "
                   f"{report['journals']} journals, {report['entries']} entries, "
                   f"{len(report['differences'])} differences")
    if not report["ok"]:
        raise CliError(f"ledger mismatch: {len(report['differences'])} differences")
