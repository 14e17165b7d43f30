"""``rop wallets``: top up, list, verify."""
from __future__ import annotations

import json
import uuid

import click

from hub.cli.base import CliError, app_context, main_group, tenant_context
from hub.db import unit_of_work
from hub.wallets.limits import money


@main_group.group()
def wallets() -> None:
    """Wallets: balances, top-ups and the ledger check."""


def _submitted(kind: str, submitted: dict, as_json: bool) -> None:
    """Print what :func:`hub.wallets.approvals.submit` did: applied, or pending a second operator."""
    approval = submitted["approval"]
    if as_json:  # the operation's result (when applied), with the approval's status
        click.echo(json.dumps(dict(submitted["result"] or {}, status=approval["status"], approval=approval,
                                   replayed=submitted["replayed"] or bool((submitted["result"] or {}).get("replayed")),
                                   available=submitted["available"])))
        return
    amount = money(approval["amount"], approval["currency"])
    if approval["status"] == "pending":
        click.echo(f"pending approval {approval['id']}: {kind} of {amount} to {approval['wallet_id']} waits for a "
                   f"second operator ({approval['why']}); rop wallets approvals approve {approval['id']}")
        return
    if submitted["replayed"]:
        click.echo(f"{kind} {approval['ref']} was already submitted: {approval['status']} ({approval['id']})")
        return
    result = submitted["result"]
    note = " (replayed: that ref was already applied)" if result["replayed"] else ""
    click.echo(f"{'topped up' if kind == 'topup' else 'adjusted'} {result['wallet_id']} by {amount}; "
               f"available {money(submitted['available'], approval['currency'])}{note}")


def _submit(kind: str, tenant_slug: str, wallet_id: str | None, amount: int, reason: str, ref: str) -> dict:
    from hub.wallets import accounts, approvals

    if not reason.strip():
        raise CliError("--reason must say why")
    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        ctx = tenant_context(uow, tenant_slug)
        submitted = approvals.submit(ctx, uow, kind, wallet_id, amount, reason, ref)
        submitted["available"] = accounts.get_wallet(ctx, uow, submitted["approval"]["wallet_id"]).available
        uow.commit()
    return submitted


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
    from its funding account, audited with the operator and the reason. Above the
    four-eyes thresholds it waits for a second operator (rop wallets approvals)."""
    if amount <= 0:
        raise CliError("AMOUNT must be a positive integer (minor units)")
    _submitted("topup", _submit("topup", tenant_slug, wallet_id, amount, reason,
                                ref_id or f"cli-{uuid.uuid4().hex}"), as_json)


# A negative AMOUNT (-500) is an argument, not an unknown option.
@wallets.command("adjust", short_help="Correct a wallet by AMOUNT (negative debits).",
                 context_settings={"ignore_unknown_options": True})
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.option("--wallet", "wallet_id", required=True, help="The wallet id.")
@click.argument("amount", type=int)
@click.option("--ref", "ref_id", help="Idempotency reference (default: a new one).")
@click.option("--reason", required=True, help="Why: the correction; in the journal and the audit log.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def wallets_adjust(tenant_slug: str, wallet_id: str, amount: int, ref_id: str | None, reason: str,
                   as_json: bool) -> None:
    """Correct a wallet by AMOUNT minor units (negative debits) against the adjustments
    account; audited. Above the four-eyes thresholds it waits for a second operator."""
    if amount == 0:
        raise CliError("AMOUNT must be a non-zero integer (minor units; negative debits)")
    _submitted("adjustment", _submit("adjustment", tenant_slug, wallet_id, amount, reason,
                                     ref_id or f"cli-{uuid.uuid4().hex}"), as_json)


@wallets.group("approvals", short_help="Four-eyes: operations waiting for approval.")
def wallets_approvals() -> None:
    """Four-eyes: top-ups and adjustments waiting for a second operator."""


@wallets_approvals.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "applied", "decided"]),
              default="pending", show_default=True, help="Which ones (decided: approved and rejected).")
@click.option("--tenant", "tenant_slug", help="Only this tenant's (slug or id).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def approvals_list(status: str, tenant_slug: str | None, as_json: bool) -> None:
    """List approvals, newest first."""
    from hub.cli.base import operator_context, tenant_id_for
    from hub.wallets import approvals

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        tenant_id = tenant_id_for(uow, tenant_slug) if tenant_slug else None
        rows = approvals.list_approvals(operator_context(), uow, status=status, tenant_id=tenant_id)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['id']}  {r['status']:<8} {r['kind']:<10} {money(r['amount'], r['currency']):>22}  "
                   f"{r['wallet_id']}  by {r['requested_by']}"
                   + (f"  decided by {r['decided_by']}" if r["decided_by"] else "") + f"  — {r['reason']}")
    if not rows:
        click.echo(f"no {status} approvals")


def _decide(verb: str, approval_id: str, note: str | None, as_json: bool) -> None:
    from hub.cli.base import operator_context
    from hub.wallets import approvals

    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        decided = getattr(approvals, verb)(operator_context(), uow, approval_id, note)
        uow.commit()
    if as_json:
        click.echo(json.dumps(decided))
        return
    a = decided["approval"]
    done = f"; journal {a['journal_id']}" if a["journal_id"] else ""
    click.echo(f"{a['id']} {a['status']}: {a['kind']} of {money(a['amount'], a['currency'])} to {a['wallet_id']} "
               f"(asked by {a['requested_by']}){done}")


@wallets_approvals.command("approve")
@click.argument("approval_id")
@click.option("--note", help="A note for the audit log.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def approvals_approve(approval_id: str, note: str | None, as_json: bool) -> None:
    """Approve (and apply, once) a pending top-up or adjustment another operator asked for."""
    _decide("approve", approval_id, note, as_json)


@wallets_approvals.command("reject")
@click.argument("approval_id")
@click.option("--note", help="Why, for the audit log.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def approvals_reject(approval_id: str, note: str | None, as_json: bool) -> None:
    """Reject a pending top-up or adjustment another operator asked for: nothing moves."""
    _decide("reject", approval_id, note, as_json)


@wallets.command("limits", short_help="Show the limits per money operation.")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def wallets_limits(tenant_slug: str, as_json: bool) -> None:
    """Show a tenant's limit per top-up, adjustment and transfer, and where each is set."""
    from hub.cli.base import tenant_id_for
    from hub.wallets.limits import effective_limits

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        found = effective_limits(uow, tenant_id_for(uow, tenant_slug))
    if as_json:
        click.echo(json.dumps(found))
        return
    for kind, row in found.items():
        click.echo(f"{kind:<11} {money(row['limit']):>26}  ({row['source']})")


@wallets.command("set-limit", short_help="Set a tenant's own limit per operation.")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.argument("kind", type=click.Choice(["default", "topup", "adjustment", "transfer"]))
@click.argument("amount")
def wallets_set_limit(tenant_slug: str, kind: str, amount: str) -> None:
    """Set the tenant's own limit per operation of KIND (default: every kind it does not
    name) to AMOUNT minor units, or 'none' to use the deployment's again. Audited."""
    from hub.cli.base import tenant_context
    from hub.wallets.limits import effective_limits, set_tenant_limits

    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        ctx = tenant_context(uow, tenant_slug)
        set_tenant_limits(ctx, uow, ctx.tenant_id, {kind: amount})
        found = effective_limits(uow, ctx.tenant_id)
        uow.commit()
    click.echo("; ".join(f"{k} {money(v['limit'])} ({v['source']})" for k, v in found.items()))


@wallets.command("list")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def wallets_list(tenant_slug: str, as_json: bool) -> None:
    """List a tenant's wallets and balances."""
    from hub.wallets import accounts
    from hub.wallets.client import wallet_view

    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        ctx = tenant_context(uow, tenant_slug)
        rows, _cursor = accounts.list_wallets(ctx, uow, limit=10_000)
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
    from hub.wallets import checks

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        report = checks.verify_ledger(uow)
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
