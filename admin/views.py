"""The admin's pages over tenancy, providers, wallets and the audit log (Flask-Admin ``BaseView``s).

Each state-changing method calls a service use-case with the admin's CallContext
(``actor="admin:<email>"``) and the audit entry is written in the same unit of work.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from rop_admin.base import AdminView, confirmed
from rop_admin.security import admin_ctx, requires_role

from hub.errors import EditConflict, ValidationFailed
from hub.state import current_state
from hub.web import request_uow


def _record_audit(*args: Any, **kwargs: Any) -> None:
    from hub.tenancy.service import record_audit

    record_audit(*args, **kwargs)


# -- tenants and clients --------------------------------------------------------------------
class TenantsView(AdminView):
    """Tenants: list, create, edit, disable/enable; a tenant's API clients."""

    @expose("/")
    def index(self):
        from hub.tenancy.service import list_tenants

        return self.render("rop_admin/tenants.html", tenants=list_tenants(request_uow()))

    @expose("/new", methods=("POST",))
    @requires_role("operator")
    def create(self):
        from hub.tenancy.service import create_tenant

        uow = request_uow()
        tenant = create_tenant(admin_ctx(), uow, request.form.get("name", ""), request.form.get("slug") or None)
        uow.commit()
        flash(f"Tenant {tenant.name} created.", "success")
        return redirect(url_for(".detail", tenant_id=tenant.id))

    @expose("/<tenant_id>")
    def detail(self, tenant_id: str):
        return self._page(tenant_id)

    def _page(self, tenant_id: str, **extra: Any):
        from hub.tenancy.scopes import DEFAULT_TENANT_SCOPES, TENANT_SCOPES
        from hub.tenancy.service import get_tenant, list_clients

        uow = request_uow()
        tenant = get_tenant(uow, tenant_id)
        # The New client form starts with read and purchase scopes ticked (least privilege);
        # a top-up is never a tenant's scope (the platform records money it received).
        from hub.wallets.limits import effective_limits, tenant_limits

        return self.render("rop_admin/tenant.html", tenant=tenant, clients=list_clients(uow, tenant.id),
                           limits=effective_limits(uow, tenant.id), own_limits=tenant_limits(uow, tenant.id),
                           scopes=[(s, TENANT_SCOPES[s], s in DEFAULT_TENANT_SCOPES) for s in sorted(TENANT_SCOPES)],
                           **extra, **_tenant_today(uow, tenant.id))

    def _edit(self, tenant_id: str, draft: str, saved: Callable[[Any], str], **changes: Any):
        """Save an edit made on the tenant's page if the tenant is still as the page showed it
        (the form's ``version``) and redirect to the page; else answer 409 with the page as it
        is now and the admin's draft (nothing is overwritten).

        :param saved: the success message, from the updated tenant.
        """
        from hub.tenancy.service import update_tenant

        uow = request_uow()
        try:
            tenant = update_tenant(admin_ctx(), uow, tenant_id, expected_version=_form_version(), **changes)
            uow.commit()
        except EditConflict as exc:
            uow.rollback()
            return self._page(tenant_id, conflict=exc.detail, draft=draft), 409
        flash(saved(tenant), "success")
        return redirect(url_for(".detail", tenant_id=tenant.id))

    @expose("/<tenant_id>/status", methods=("POST",))
    @requires_role("operator")
    def status(self, tenant_id: str):
        """Enable, or — after a confirmation page — disable a tenant (its clients' tokens stop working)."""
        from hub.tenancy.service import get_tenant, list_clients, set_tenant_status

        uow = request_uow()
        status = request.form.get("status", "")
        if status == "disabled" and not confirmed():
            tenant = get_tenant(uow, tenant_id)
            active = sum(1 for c in list_clients(uow, tenant.id) if c.status == "active")
            return self.confirm_page(
                f"Disable the tenant {tenant.name}?",
                [("Tenant", f"{tenant.name} ({tenant.slug})"), ("Id", tenant.id), ("Active API clients", active)],
                fields={"status": status}, cancel=url_for(".detail", tenant_id=tenant.id),
                warning=f"Its {active} active client(s) stop working within seconds: no purchase, no wallet "
                        "call. Purchases already sent keep settling.",
                confirm_label="Disable the tenant")
        set_tenant_status(admin_ctx(), uow, tenant_id, status)
        uow.commit()
        return redirect(url_for(".detail", tenant_id=tenant_id))

    @expose("/<tenant_id>/rename", methods=("POST",))
    @requires_role("operator")
    def rename(self, tenant_id: str):
        name = request.form.get("name", "")
        return self._edit(tenant_id, f"name: {name}", lambda tenant: f"Tenant renamed to {tenant.name}.", name=name)

    @expose("/<tenant_id>/settings", methods=("POST",))
    @requires_role("admin")
    def settings(self, tenant_id: str):
        """Replace the tenant's settings (a JSON object); admin only."""
        import json

        draft = request.form.get("settings") or "{}"
        try:
            settings = json.loads(draft)
        except ValueError:
            raise ValidationFailed("settings must be a JSON object", errors={"settings": ["not JSON"]}) from None
        return self._edit(tenant_id, f"settings: {draft}", lambda _tenant: "Settings saved.", settings=settings)

    @expose("/<tenant_id>/limits", methods=("POST",))
    @requires_role("admin")
    def limits(self, tenant_id: str):
        """Set the tenant's own limits per money operation (empty: the deployment's); admin only."""
        from hub.wallets.limits import KINDS, set_tenant_limits

        uow = request_uow()
        set_tenant_limits(admin_ctx(), uow, tenant_id,
                          {key: request.form.get(key, "") for key in ("default", *KINDS)})
        uow.commit()
        flash("Limits saved.", "success")
        return redirect(url_for(".detail", tenant_id=tenant_id))

    @expose("/<tenant_id>/clients", methods=("POST",))
    @requires_role("admin")
    def create_client(self, tenant_id: str):
        """Create a client; its secret appears on this response only (never stored in clear)."""
        from hub.tenancy.service import create_client

        uow = request_uow()
        client, secret = create_client(admin_ctx(), uow, tenant_id, scopes=request.form.getlist("scopes") or None,
                                       name=request.form.get("name", ""))
        return _to_secret_page(uow, client, secret)


def _to_secret_page(uow, client, secret: str):
    """Post/redirect/get: the secret goes to a one-time slot, the browser to the page that shows
    it once (a refresh of that page shows "already shown", and creates or rotates nothing).
    The slot is filled before the commit: without Redis nothing is committed (503), rather
    than a client whose secret nobody saw."""
    from rop_admin import once

    token = once.put({"client_id": client.id, "tenant_id": client.tenant_id, "secret": secret})
    uow.commit()
    return redirect(url_for("admin_clients.secret", client_id=client.id, token=token))


def _tenant_today(uow, tenant_id: str) -> dict[str, Any]:
    """The tenant page's figures: today's transactions (since midnight in the admin's
    timezone), its wallets' balances, its running bulk jobs, its webhook endpoint."""
    import datetime as dt

    from rop_admin.formatting import admin_timezone

    from hub.app import SERVICE_PACKAGES
    from hub.bus.webhooks import get_webhook
    from hub.errors import NotFound
    from hub.wallets.checks import wallet_totals

    midnight = dt.datetime.now(admin_timezone()).replace(hour=0, minute=0, second=0, microsecond=0)
    today, bulk_running = None, None
    if "hub.transactions" in SERVICE_PACKAGES:
        from hub.transactions import client as transactions

        today = transactions.tenant_figures(admin_ctx(), uow, tenant_id, since=midnight)
    if "hub.bulk" in SERVICE_PACKAGES:
        from hub.bulk import client as bulk

        running, more = bulk.list_(admin_ctx(tenant_id), uow, status="running", limit=50)
        bulk_running = f"{len(running)}{'+' if more else ''}"
    try:
        webhook_url = get_webhook(admin_ctx(tenant_id), uow).url
    except NotFound:
        webhook_url = None
    return {"today": today, "since": midnight, "balances": wallet_totals(admin_ctx(), uow, tenant_id),
            "bulk_running": bulk_running, "webhook_url": webhook_url}


class ClientsView(AdminView):
    """A client's security actions (admin only): rotate its secret, revoke it."""

    def is_visible(self) -> bool:
        return False  # reached from a tenant's page

    @expose("/")
    def index(self):
        return redirect(url_for("admin_tenants.index"))

    @expose("/<client_id>/rotate", methods=("POST",))
    @requires_role("admin")
    def rotate(self, client_id: str):
        from hub.tenancy.service import rotate_client_secret

        uow = request_uow()
        client, secret = rotate_client_secret(admin_ctx(), uow, client_id)
        return _to_secret_page(uow, client, secret)

    @expose("/<client_id>/secret/<token>")
    @requires_role("admin")
    def secret(self, client_id: str, token: str):
        """The one page that shows a client secret, once: never cached; a refresh repeats nothing."""
        from rop_admin import once

        from hub.tenancy.service import get_client

        client = get_client(request_uow(), client_id)
        slot = once.take(token)
        if slot is None or slot["client_id"] != client.id:
            return self.render("rop_admin/secret.html", client=client, secret=None), 410
        return self.render("rop_admin/secret.html", client=client, secret=slot["secret"])

    @expose("/<client_id>/revoke", methods=("POST",))
    @requires_role("admin")
    def revoke(self, client_id: str):
        from hub.tenancy.service import revoke_client

        uow = request_uow()
        client = revoke_client(admin_ctx(), uow, client_id)
        uow.commit()
        flash(f"Client {client.id} revoked.", "success")
        return redirect(url_for("admin_tenants.detail", tenant_id=client.tenant_id))


def _form_version() -> int | None:
    """The ``version`` an edit form carries (the row as the page showed it); None without one."""
    raw = (request.form.get("version") or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed("version must be a whole number", errors={"version": ["invalid"]}) from None


# -- provider configurations (credentials write-only, masked, encrypted by the service) -------
def _parse_pairs(text: str, what: str) -> dict[str, Any]:
    """``key=value`` lines into a dict (numbers stay strings: the provider's schema converts)."""
    out: dict[str, Any] = {}
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        if "=" not in line:
            raise ValidationFailed(f"{what}: one key=value per line", errors={what: ["malformed line"]})
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def kill_switch_message(config_id: str, enabled: bool, in_flight: int) -> str:
    """What switching a configuration off or on does, with its purchases in flight."""
    if enabled:
        return f"{config_id} is switched on: new purchases may go to it."
    return (f"{config_id} is switched off: no new purchase goes to it. {in_flight} purchase(s) in flight there "
            "keep their status checks and callbacks until the provider answers.")


class ProvidersView(AdminView):
    """Provider configurations: masked credentials, write-only credential forms, kill switch."""

    @expose("/")
    def index(self):
        from hub.providers.service import list_configs, masked
        from hub.tenancy.service import list_tenants
        from hub.transactions.client import in_flight_by_config

        host = current_state().extras.get("plugins")
        codes = sorted(getattr(host, "providers", {}) or {})
        uow = request_uow()
        rows = [masked(row) for row in list_configs(uow)]
        # The kill switch's confirmation says how many purchases are in flight there.
        in_flight = in_flight_by_config(admin_ctx(), uow, [r["id"] for r in rows])
        # A tenant's own configuration names the tenant from a picker: never a typed id.
        return self.render("rop_admin/providers.html", configs=rows, codes=codes, in_flight=in_flight,
                           tenants=list_tenants(uow))

    @expose("/new", methods=("POST",))
    @requires_role("admin")
    def create(self):
        """Add a configuration; credentials are encrypted by the providers service, never echoed."""
        from hub.providers.service import add_config

        credentials = _parse_pairs(request.form.get("credentials", ""), "credentials")
        settings = _parse_pairs(request.form.get("settings", ""), "settings")
        uow = request_uow()
        row = add_config(uow, request.form.get("provider_code", ""), request.form.get("name", ""),
                         settings=settings, credentials=credentials,
                         tenant_id=request.form.get("tenant_id") or None)
        _record_audit(admin_ctx(), uow, "provider_config.created", tenant_id=row.tenant_id,
                      target_type="provider_config", target_id=row.id,
                      after={"provider_code": row.provider_code, "name": row.name, "settings": settings,
                             "credential_keys": sorted(credentials)})
        uow.commit()
        setting = current_state().extras["plugins"].provider_class(row.provider_code).callback_secret_setting
        generated = (f" The hub generated its callback secret ({setting}); to give the provider one of "
                     "your own, replace the credentials." if setting and not credentials.get(setting) else "")
        flash(f"Provider configuration {row.id} added.{generated}", "success")
        return redirect(url_for(".index"))

    @expose("/<config_id>/credentials", methods=("POST",))
    @requires_role("admin")
    def credentials(self, config_id: str):
        """Replace a configuration's credentials (write-only: the form is never pre-filled)."""
        from hub.providers.service import set_credentials

        credentials = _parse_pairs(request.form.get("credentials", ""), "credentials")
        uow = request_uow()
        row = set_credentials(uow, config_id, credentials)
        _record_audit(admin_ctx(), uow, "provider_config.credentials_set", tenant_id=row.tenant_id,
                      target_type="provider_config", target_id=row.id,
                      after={"credential_keys": sorted(credentials)})
        uow.commit()
        flash(f"Credentials of {row.id} replaced.", "success")
        return redirect(url_for(".index"))

    @expose("/<config_id>/enabled", methods=("POST",))
    @requires_role("operator")
    def enabled(self, config_id: str):
        """The kill switch: enable or disable a configuration. Disabling stops new purchases
        only: the purchases in flight there (counted in the confirmation and the message) keep
        their status checks and callbacks."""
        from hub.providers.service import set_enabled
        from hub.transactions.client import in_flight_by_config

        enabled = request.form.get("enabled") == "1"
        uow = request_uow()
        if not enabled and not confirmed():
            from hub.providers.service import get_config

            row = get_config(uow, config_id)
            in_flight = in_flight_by_config(admin_ctx(), uow, [row.id])[row.id]
            return self.confirm_page(
                f"Switch {row.id} off?",
                [("Configuration", f"{row.id} ({row.provider_code}, {row.name})"),
                 ("Tenant", row.tenant_id or "all tenants"), ("Purchases in flight there", in_flight)],
                fields={"enabled": "0"}, cancel=url_for(".index"), confirm_label="Switch it off",
                warning=f"No new purchase goes to it. The {in_flight} purchase(s) in flight there keep their "
                        "status checks and callbacks until the provider answers.")
        row = set_enabled(uow, config_id, enabled)
        in_flight = in_flight_by_config(admin_ctx(), uow, [row.id])[row.id]
        _record_audit(admin_ctx(), uow, f"provider_config.{'enabled' if enabled else 'disabled'}",
                      tenant_id=row.tenant_id, target_type="provider_config", target_id=row.id,
                      after={"enabled": enabled, "in_flight": in_flight})
        uow.commit()
        flash(kill_switch_message(row.id, enabled, in_flight), "success")
        return redirect(url_for(".index"))


# -- wallets (balances, statement, top-up as a ledger posting) ------------------------------
def _amount(field: str = "amount") -> int:
    try:
        return int(request.form.get(field, ""))
    except ValueError:
        raise ValidationFailed("the amount must be a whole number of minor units",
                               errors={field: ["invalid"]}) from None


def _reason() -> str:
    reason = (request.form.get("reason") or "").strip()
    if not reason:
        raise ValidationFailed("this needs a reason", errors={"reason": ["required"]})
    return reason


class WalletsView(AdminView):
    """Wallets: balances per tenant, a wallet's statement, top-ups as ledger postings."""

    #: The list's columns: (label, sort key or None).
    COLUMNS = (("Wallet", None), ("Tenant", None), ("Owner", None), ("Available", "available"), ("Held", "held"),
               ("Overdraft limit", None), ("Currency", "currency"), ("Created", "created"))

    @expose("/")
    def index(self):
        """Every tenant's wallets (or one's) with their balances: search, sortable columns, pages."""
        from rop_admin.lists import page_number, pager, sort_headers

        from hub.tenancy.service import list_tenants
        from hub.wallets.accounts import list_wallets, operator_wallets
        from hub.wallets.client import wallet_view

        filters = {k: (request.args.get(k) or "").strip() for k in ("tenant", "q")}
        uow = request_uow()
        tenants_view = [{"id": t.id, "name": t.name} for t in list_tenants(uow)]
        # A read only: a tenant without a wallet gets an "Open main wallet" button (a POST).
        has_main = filters["tenant"] not in {t["id"] for t in tenants_view} or any(
            w.is_main for w in list_wallets(admin_ctx(filters["tenant"]), uow, limit=200, ensure_main=False)[0])
        result = operator_wallets(admin_ctx(), uow, tenant_id=filters["tenant"] or None,
                                  q=filters["q"] or None, sort=request.args.get("sort") or "created",
                                  page=page_number(), per_page=50)
        rows = [dict(wallet_view(w), tenant_id=w.tenant_id, created_at=w.created_at) for w in result["rows"]]
        return self.render("rop_admin/wallets.html", tenants=tenants_view, filters=filters, wallets=rows,
                           sort=result["sort"], columns=sort_headers(self.COLUMNS, result["sort"]),
                           pager=pager(result, "wallets"), has_main=has_main)

    @expose("/<tenant_id>/open", methods=("POST",))
    @requires_role("operator")
    def open_main(self, tenant_id: str):
        """Open the tenant's main wallet (what the API does on a tenant's first wallet call)."""
        from hub.tenancy.service import get_tenant
        from hub.wallets.accounts import get_main_wallet

        uow = request_uow()
        get_tenant(uow, tenant_id)  # 404 for an unknown tenant
        wallet = get_main_wallet(admin_ctx(tenant_id), uow)
        uow.commit()
        return redirect(url_for(".detail", tenant_id=tenant_id, wallet_id=wallet.id))

    @expose("/<tenant_id>/<wallet_id>")
    def detail(self, tenant_id: str, wallet_id: str):
        """A wallet's balance and statement, and the top-up form (a fresh idempotency key per form)."""
        from rop_admin.lists import page_number, pager

        from hub.wallets.accounts import statement_page
        from hub.wallets.client import get_wallet

        uow = request_uow()
        ctx = admin_ctx(tenant_id)
        wallet = get_wallet(ctx, uow, wallet_id)
        result = statement_page(ctx, uow, wallet_id, page=page_number(), per_page=50)
        from hub.wallets.limits import effective_limits, settings

        return self.render("rop_admin/wallet.html", tenant_id=tenant_id, wallet=wallet, entries=result["items"],
                           pager=pager(result, "entries"), limits=effective_limits(uow, tenant_id), four_eyes=settings(),
                           topup_ref=f"admin-topup-{uuid.uuid4().hex}",
                           adjust_ref=f"admin-adjust-{uuid.uuid4().hex}")

    @expose("/<tenant_id>/<wallet_id>/topup", methods=("POST",))
    @requires_role("operator")
    def topup(self, tenant_id: str, wallet_id: str):
        """Top up: a ledger posting from the funding account, with a reason (audited by the
        use-case), after a confirmation page; above the four-eyes thresholds it waits for a
        second admin (Approvals)."""
        return self._money_action("topup", tenant_id, wallet_id)

    @expose("/<tenant_id>/<wallet_id>/adjust", methods=("POST",))
    @requires_role("operator")
    def adjust(self, tenant_id: str, wallet_id: str):
        """Adjust: a posting against the adjustments account (signed), with a reason; audited
        there; confirmed first, and four-eyes like a top-up."""
        return self._money_action("adjustment", tenant_id, wallet_id)

    def _money_action(self, kind: str, tenant_id: str, wallet_id: str):
        from rop_admin.formatting import money

        from hub.tenancy.service import get_tenant
        from hub.wallets import approvals
        from hub.wallets.accounts import get_wallet
        from hub.wallets.limits import LABELS, check_amount

        reason, amount, ref = _reason(), _amount(), request.form.get("ref") or ""
        approvals.check(kind, amount, reason, ref)
        ctx, uow = admin_ctx(tenant_id), request_uow()
        wallet = get_wallet(ctx, uow, wallet_id)
        check_amount(uow, tenant_id, kind, amount, wallet.currency)  # a form error before the confirmation
        back = url_for(".detail", tenant_id=tenant_id, wallet_id=wallet_id)
        if not confirmed():
            tenant = get_tenant(uow, tenant_id)
            label = LABELS[kind]
            what = (f"credit {money(amount, wallet.currency)}" if amount > 0
                    else f"debit {money(-amount, wallet.currency)}")
            return self.confirm_page(
                f"Confirm the {label}: {what}",
                [("Amount", money(amount, wallet.currency)), ("Wallet", f"{wallet.id}" + (" (main)" if wallet.is_main
                                                                                        else f" ({wallet.owner_ref})")),
                 ("Tenant", f"{tenant.name} ({tenant.slug})"),
                 ("Available now", money(wallet.available, wallet.currency)), ("Reason", reason),
                 ("Reference", ref)],
                fields={"amount": amount, "reason": reason, "ref": ref}, cancel=back,
                confirm_label=f"Confirm the {label} of {money(amount, wallet.currency)}")
        submitted = approvals.submit(ctx, uow, kind, wallet_id, amount, reason, ref)
        uow.commit()
        approval = submitted["approval"]
        if approval["status"] == "pending":
            flash(f"Not applied yet: {approval['why']}. A second admin approves or rejects it on the Approvals "
                  f"page ({approval['id']}).", "warning")
        elif submitted["replayed"]:
            flash(f"This form was already submitted ({approval['id']}: {approval['status']}).", "info")
        else:
            verb = "Topped up" if kind == "topup" else "Adjusted by"
            flash(f"{verb} {money(amount, wallet.currency)} (journal {approval['journal_id']}).", "success")
        return redirect(back)


class ApprovalsView(AdminView):
    """Four-eyes: operators' top-ups and adjustments waiting for a second admin."""

    @expose("/")
    def index(self):
        from hub.wallets.approvals import list_approvals

        uow = request_uow()
        return self.render("rop_admin/approvals.html", pending=list_approvals(admin_ctx(), uow, status="pending"),
                           decided=list_approvals(admin_ctx(), uow, status="decided", limit=50))

    @expose("/selected", methods=("POST",))
    @requires_role("operator")
    def selected(self):
        """Approve or reject the ticked approvals: a confirmation page first (count, rows,
        total; the ones this admin asked for, refused, and the ones decided already), then
        each once through the single decision's use-case — the four-eyes rule holds per row."""
        from rop_admin import selection
        from rop_admin.formatting import money

        from hub.wallets import approvals

        decision = request.form.get("decision", "")
        if decision not in ("approve", "reject"):
            raise ValidationFailed("decision must be approve or reject", errors={"decision": ["invalid"]})
        verb = "approved" if decision == "approve" else "rejected"
        back = url_for(".index")
        ids = selection.selected_ids("approvals", decision)
        if ids is None:
            return redirect(back)
        uow, ctx, note = request_uow(), admin_ctx(), request.form.get("note")
        if confirmed():
            done, refused = selection.each(uow, ids, lambda i: getattr(approvals, decision)(ctx, uow, i, note))
            uow.commit()
            selection.report(f"{len(done)} approval(s) {verb}"
                             + (f": {', '.join(d['approval']['id'] for d in done)}." if done else "."),
                             refused, verb)
            return redirect(back)
        pending = {a["id"]: a for a in approvals.list_approvals(ctx, uow, status="pending", ids=ids, limit=len(ids))}
        eligible, refused = [], []
        for approval_id in ids:
            a = pending.get(approval_id)
            if a is None:
                refused.append((approval_id, "not pending (decided already, or no such approval)"))
            elif a["requested_by"] == ctx.actor:
                refused.append((approval_id, f"you asked for it: a second operator must {decision} it"))
            else:
                eligible.append(a)
        if not eligible:
            flash(f"None of the selected approvals can be {verb} by you: {selection.refusals(refused)}.", "error")
            return redirect(back)
        rows = [("Decision", decision), ("Approvals", len(eligible)),
                ("Total", selection.total((a["amount"], a["currency"]) for a in eligible))]
        rows += [(a["id"], (f"{a['kind']} of {money(a['amount'], a['currency'])} to {a['wallet_id']}, "
                            f"asked by {a['requested_by']}: {a['reason']}")) for a in eligible]
        label = f"{decision.capitalize()} {len(eligible)} approval(s)"
        return self.confirm_page(
            f"{label}?", rows + ([("Note", note)] if note else []),
            fields={"decision": decision, "note": note or "", "ids": [a["id"] for a in eligible]}, cancel=back,
            confirm_label=label,
            warning=(("Approving applies each one now, once. " if decision == "approve" else "")
                     + (f"Refused, left pending ({len(refused)}): {selection.refusals(refused)}."
                        if refused else "")) or None)

    @expose("/<approval_id>/<decision>", methods=("POST",))
    @requires_role("operator")
    def decide(self, approval_id: str, decision: str):
        """Approve (apply, exactly once) or reject; never the admin who asked."""
        from rop_admin.formatting import money

        from hub.wallets import approvals

        if decision not in ("approve", "reject"):
            raise ValidationFailed("approve or reject", errors={"decision": ["invalid"]})
        uow = request_uow()
        decided = getattr(approvals, decision)(admin_ctx(), uow, approval_id, request.form.get("note"))
        uow.commit()
        a = decided["approval"]
        flash(f"{a['id']} {a['status']}: {a['kind']} of {money(a['amount'], a['currency'])} to {a['wallet_id']}.",
              "success")
        return redirect(url_for(".index"))


# -- audit log (read-only) ------------------------------------------------------------------
class AuditView(AdminView):
    """The audit log, newest first; filter by action prefix, actor, tenant. Read-only."""

    @expose("/")
    def index(self):
        from hub.tenancy.service import list_audit

        filters = {k: (request.args.get(k) or "").strip() for k in ("action", "actor", "tenant")}
        entries = list_audit(request_uow(), action_prefix=filters["action"] or None, actor=filters["actor"] or None,
                             tenant_id=filters["tenant"] or None)
        return self.render("rop_admin/audit.html", entries=entries, filters=filters)
