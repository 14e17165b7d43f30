"""The admin's pages over tenancy, providers, wallets and the audit log (Flask-Admin ``BaseView``s).

Each state-changing method calls a service use-case with the admin's CallContext
(``actor="admin:<email>"``) and the audit entry is written in the same unit of work.
"""
from __future__ import annotations

import uuid
from typing import Any

from flask import current_app, flash, redirect, request, url_for
from flask_admin import expose
from rop_admin.base import AdminView
from rop_admin.security import admin_ctx, requires_role

from hub.db import unit_of_work
from hub.errors import ValidationFailed
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
        from hub.tenancy.scopes import DEFAULT_TENANT_SCOPES, TENANT_SCOPES
        from hub.tenancy.service import get_tenant, list_clients

        uow = request_uow()
        tenant = get_tenant(uow, tenant_id)
        # The New client form starts with read and purchase scopes ticked (least privilege);
        # a top-up is never a tenant's scope (the platform records money it received).
        return self.render("rop_admin/tenant.html", tenant=tenant, clients=list_clients(uow, tenant.id),
                           scopes=[(s, TENANT_SCOPES[s], s in DEFAULT_TENANT_SCOPES) for s in sorted(TENANT_SCOPES)])

    @expose("/<tenant_id>/status", methods=("POST",))
    @requires_role("operator")
    def status(self, tenant_id: str):
        from hub.tenancy.service import set_tenant_status

        uow = request_uow()
        set_tenant_status(admin_ctx(), uow, tenant_id, request.form.get("status", ""))
        uow.commit()
        return redirect(url_for(".detail", tenant_id=tenant_id))

    @expose("/<tenant_id>/rename", methods=("POST",))
    @requires_role("operator")
    def rename(self, tenant_id: str):
        from hub.tenancy.service import update_tenant

        uow = request_uow()
        tenant = update_tenant(admin_ctx(), uow, tenant_id, name=request.form.get("name", ""))
        uow.commit()
        flash(f"Tenant renamed to {tenant.name}.", "success")
        return redirect(url_for(".detail", tenant_id=tenant.id))

    @expose("/<tenant_id>/settings", methods=("POST",))
    @requires_role("admin")
    def settings(self, tenant_id: str):
        """Replace the tenant's settings (a JSON object); admin only."""
        import json

        from hub.tenancy.service import update_tenant

        try:
            settings = json.loads(request.form.get("settings") or "{}")
        except ValueError:
            raise ValidationFailed("settings must be a JSON object", errors={"settings": ["not JSON"]}) from None
        uow = request_uow()
        tenant = update_tenant(admin_ctx(), uow, tenant_id, settings=settings)
        uow.commit()
        flash("Settings saved.", "success")
        return redirect(url_for(".detail", tenant_id=tenant.id))

    @expose("/<tenant_id>/clients", methods=("POST",))
    @requires_role("admin")
    def create_client(self, tenant_id: str):
        """Create a client; its secret appears on this response only (never stored in clear)."""
        from hub.tenancy.service import create_client

        uow = request_uow()
        client, secret = create_client(admin_ctx(), uow, tenant_id, scopes=request.form.getlist("scopes") or None,
                                       name=request.form.get("name", ""))
        uow.commit()
        return _secret_page(self, client, secret)


def _secret_page(view: AdminView, client, secret: str):
    """The one page that shows a client secret: never cached."""
    response = current_app.make_response(view.render("rop_admin/secret.html", client=client, secret=secret))
    response.headers["Cache-Control"] = "no-store"
    return response


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
        uow.commit()
        return _secret_page(self, client, secret)

    @expose("/<client_id>/revoke", methods=("POST",))
    @requires_role("admin")
    def revoke(self, client_id: str):
        from hub.tenancy.service import revoke_client

        uow = request_uow()
        client = revoke_client(admin_ctx(), uow, client_id)
        uow.commit()
        flash(f"Client {client.id} revoked.", "success")
        return redirect(url_for("admin_tenants.detail", tenant_id=client.tenant_id))


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
        from hub.transactions.client import in_flight_by_config

        host = current_state().extras.get("plugins")
        codes = sorted(getattr(host, "providers", {}) or {})
        uow = request_uow()
        rows = [masked(row) for row in list_configs(uow)]
        # The kill switch's confirmation says how many purchases are in flight there.
        in_flight = in_flight_by_config(admin_ctx(), uow, [r["id"] for r in rows])
        return self.render("rop_admin/providers.html", configs=rows, codes=codes, in_flight=in_flight)

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

    @expose("/")
    def index(self):
        """A tenant's wallets and balances (through the wallets service)."""
        from hub.tenancy.service import list_tenants
        from hub.wallets.client import wallet_view
        from hub.wallets.service import get_main_wallet, list_wallets

        # The tenant's main wallet is created on first access: that write commits in its own
        # unit of work, before this GET's read-only session opens.
        with unit_of_work(current_state().db) as write:
            all_tenants = list_tenants(write)
            tenant_ids = {t.id for t in all_tenants}
            tenant_id = request.args.get("tenant") or (all_tenants[0].id if all_tenants else None)
            if tenant_id in tenant_ids:
                get_main_wallet(admin_ctx(tenant_id), write)
                write.commit()
            tenants_view = [{"id": t.id, "name": t.name} for t in all_tenants]
        rows = []
        if tenant_id:
            found, _ = list_wallets(admin_ctx(tenant_id), request_uow(), limit=200)
            rows = [wallet_view(w) for w in found]
        return self.render("rop_admin/wallets.html", tenants=tenants_view, tenant_id=tenant_id, wallets=rows)

    @expose("/<tenant_id>/<wallet_id>")
    def detail(self, tenant_id: str, wallet_id: str):
        """A wallet's balance and statement, and the top-up form (a fresh idempotency key per form)."""
        from hub.wallets.client import get_wallet
        from hub.wallets.service import statement

        uow = request_uow()
        ctx = admin_ctx(tenant_id)
        wallet = get_wallet(ctx, uow, wallet_id)
        entries, _ = statement(ctx, uow, wallet_id, limit=500)
        return self.render("rop_admin/wallet.html", tenant_id=tenant_id, wallet=wallet, entries=entries,
                           topup_ref=f"admin-topup-{uuid.uuid4().hex}",
                           adjust_ref=f"admin-adjust-{uuid.uuid4().hex}")

    @expose("/<tenant_id>/<wallet_id>/topup", methods=("POST",))
    @requires_role("operator")
    def topup(self, tenant_id: str, wallet_id: str):
        """Top up: a ledger posting from the funding account, with a reason (audited by the use-case)."""
        from hub.wallets.service import topup

        reason = _reason()
        amount = _amount()
        uow = request_uow()
        result = topup(admin_ctx(tenant_id), uow, wallet_id, amount, request.form.get("ref") or "", reason=reason)
        uow.commit()
        flash(f"Topped up {amount} {result['currency']} (journal {result['journal_id']}).", "success")
        return redirect(url_for(".detail", tenant_id=tenant_id, wallet_id=wallet_id))


    @expose("/<tenant_id>/<wallet_id>/adjust", methods=("POST",))
    @requires_role("operator")
    def adjust(self, tenant_id: str, wallet_id: str):
        """Adjust: a posting against the adjustments account (signed), with a reason; audited there."""
        from hub.wallets.service import adjust

        reason = _reason()
        amount = _amount()
        uow = request_uow()
        result = adjust(admin_ctx(tenant_id), uow, wallet_id, amount, reason, request.form.get("ref") or "")
        uow.commit()
        flash(f"Adjusted by {amount} {result['currency']} (journal {result['journal_id']}).", "success")
        return redirect(url_for(".detail", tenant_id=tenant_id, wallet_id=wallet_id))


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
