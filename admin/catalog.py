"""Catalog and tenant pricing pages: through the products service's operator use-cases.

Cost and offers are for operators only (``hub.products.operators``); a tenant's price is
the one the tenant would be charged (``hub.products.service.list_products``). Price rule
changes go through ``hub.products.rules`` (which keeps their history); every change made
here is also written to the audit log.
"""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from rop_admin.base import AdminView
from rop_admin.security import admin_ctx, requires_role, safe_admin_target

from hub.errors import EditConflict, HubError, ValidationFailed
from hub.web import request_uow


def _audit(action: str, *, target_type: str, target_id: str, tenant_id: str | None = None,
           after: dict[str, Any] | None = None, before: dict[str, Any] | None = None) -> None:
    from hub.tenancy.service import record_audit

    record_audit(admin_ctx(), request_uow(), action, tenant_id=tenant_id, target_type=target_type,
                 target_id=target_id, before=before, after=after)


def _tenants() -> list:
    from hub.tenancy.service import list_tenants

    return list_tenants(request_uow())


def _int(field: str) -> int:
    try:
        return int(request.form.get(field, ""))
    except ValueError:
        raise ValidationFailed(f"{field} must be a whole number", errors={field: ["not an integer"]}) from None


class CatalogView(AdminView):
    """Products with a tenant's price and availability, offers with their cost, history."""

    @expose("/")
    def index(self):
        from hub.products.operators import product_detail
        from hub.products.service import list_products

        tenants = _tenants()
        tenant_id = request.args.get("tenant") or (tenants[0].id if tenants else None)
        filters = {k: (request.args.get(k) or "").strip() or None for k in ("q", "category")}
        rows, next_cursor = [], None
        if tenant_id:
            uow = request_uow()
            items, next_cursor = list_products(admin_ctx(tenant_id), uow, q=filters["q"],
                                               category=filters["category"],
                                               cursor=request.args.get("cursor") or None, limit=50)
            for item in items:
                detail = product_detail(admin_ctx(), uow, item["code"])
                active_costs = [o["cost"] for o in detail["offers"] if o["status"] == "active"]
                rows.append({**item, "status": detail["status"], "offers": len(detail["offers"]),
                             "active_offers": len(active_costs), "cost": min(active_costs, default=None)})
        return self.render("rop_admin/catalog.html", tenants=tenants, tenant_id=tenant_id, rows=rows,
                           filters={k: v or "" for k, v in filters.items()}, next_cursor=next_cursor)

    @expose("/open")
    def open_code(self):
        """Open a product by its code (disabled products are not in the list)."""
        code = (request.args.get("code") or "").strip()
        return redirect(url_for(".detail", code=code, tenant=request.args.get("tenant") or None))

    @expose("/<code>")
    def detail(self, code: str):
        from hub.products.operators import list_syncs, product_detail, product_history
        from hub.products.rules import explain_price

        uow = request_uow()
        product = product_detail(admin_ctx(), uow, code)
        tenants = _tenants()
        tenant_id = request.args.get("tenant") or (tenants[0].id if tenants else None)
        explained = explain_price(admin_ctx(), uow, tenant_id=tenant_id, product_code=code) if tenant_id else None
        configs = sorted({o["config_id"] for o in product["offers"]})
        return self.render("rop_admin/product.html", product=product, history=product_history(admin_ctx(), uow, code),
                           tenants=tenants, tenant_id=tenant_id, explained=explained,
                           syncs=[s for c in configs for s in list_syncs(admin_ctx(), uow, config_id=c, limit=5)])

    @expose("/<code>/enabled", methods=("POST",))
    @requires_role("operator")
    def enabled(self, code: str):
        """Take a product off sale, or back on."""
        from hub.products.operators import set_product_enabled

        enabled = request.form.get("enabled") == "1"
        uow = request_uow()
        product = set_product_enabled(admin_ctx(), uow, code, enabled)
        _audit(f"product.{'enabled' if enabled else 'disabled'}", target_type="product", target_id=code,
               after={"status": product["status"]})
        uow.commit()
        return redirect(url_for(".detail", code=code))

    @expose("/<code>/offers/<offer_id>", methods=("POST",))
    @requires_role("operator")
    def offer(self, code: str, offer_id: str):
        """Switch an offer off or on, or set its priority (lower first)."""
        from hub.products.operators import set_offer_enabled, set_offer_priority

        uow = request_uow()
        if "priority" in request.form:
            view = set_offer_priority(admin_ctx(), uow, offer_id, _int("priority"))
            _audit("product_offer.priority_set", target_type="product_offer", target_id=offer_id,
                   after={"product": code, "priority": view["priority"]})
        else:
            enabled = request.form.get("enabled") == "1"
            view = set_offer_enabled(admin_ctx(), uow, offer_id, enabled)
            _audit(f"product_offer.{'enabled' if enabled else 'disabled'}", target_type="product_offer",
                   target_id=offer_id, after={"product": code, "status": view["status"]})
        uow.commit()
        return redirect(url_for(".detail", code=code))

    @expose("/sync", methods=("POST",))
    @requires_role("operator")
    def sync(self):
        """Ask a worker to sync one provider configuration's catalog."""
        from hub.products.operators import request_sync

        config_id = request.form.get("config_id", "")
        uow = request_uow()
        message_id = request_sync(admin_ctx(), uow, config_id)
        _audit("catalog.sync_requested", target_type="provider_config", target_id=config_id,
               after={"message_id": message_id})
        uow.commit()
        flash(f"Catalog sync of {config_id} requested.", "success")
        return redirect(safe_admin_target(request.form.get("back")) or url_for(".index"))


def _seen() -> dict[str, int] | None:
    """The rules the pricing page showed (its ``seen`` field: target -> version); None without one."""
    import json

    raw = request.form.get("seen")
    if raw is None:
        return None
    try:
        seen = json.loads(raw or "{}")
    except ValueError:
        seen = None
    if not isinstance(seen, dict) or not all(isinstance(v, int) for v in seen.values()):
        raise ValidationFailed("seen must map rule targets to versions", errors={"seen": ["invalid"]})
    return seen


def _stale(exc: HubError, tenant_id: str | None, draft: str):
    """A rule changed since the page showed it: nothing saved; back to the rules as they are now."""
    request_uow().rollback()
    flash(f"{exc.detail}. The page shows the rules as they are now; your change ({draft}) was not saved.", "error")
    return redirect(url_for(".index", tenant=tenant_id))


class PricingView(AdminView):
    """The platform price list and each tenant's price rules (set, remove, history)."""

    @expose("/")
    def index(self):
        import json

        from hub.products.pricing import KINDS
        from hub.products.rules import list_rules, rule_history

        tenant_id = request.args.get("tenant") or None
        uow = request_uow()
        rules = list_rules(admin_ctx(), uow, tenant_id=tenant_id)
        # The forms say which rules (at which versions) this page showed: a save made after
        # another admin changed one of them is refused, not applied over the change.
        seen = json.dumps({r["target"]: r["version"] for r in rules})
        return self.render("rop_admin/pricing.html", tenants=_tenants(), tenant_id=tenant_id, kinds=KINDS,
                           rules=rules, seen=seen,
                           history=rule_history(admin_ctx(), uow, tenant_id=tenant_id, limit=50))

    @expose("/save", methods=("POST",))
    @requires_role("admin")
    def save(self):
        """Create or replace a rule (platform-wide when no tenant is given)."""
        from hub.products.rules import set_rule

        tenant_id = request.form.get("tenant_id") or None
        target, kind, value = (request.form.get("target") or "").strip(), request.form.get("kind", ""), _int("value")
        uow = request_uow()
        try:
            rule = set_rule(admin_ctx(), uow, tenant_id=tenant_id, target=target, kind=kind, value=value,
                            seen=_seen())
        except EditConflict as exc:
            return _stale(exc, tenant_id, f"{target} {kind} {value}")
        _audit("price_rule.set", tenant_id=tenant_id, target_type="price_rule", target_id=rule["id"],
               after={"target": rule["target"], "kind": rule["kind"], "value": rule["value"]})
        uow.commit()
        flash(f"Rule for {rule['target']} saved.", "success")
        return redirect(url_for(".index", tenant=tenant_id))

    @expose("/remove", methods=("POST",))
    @requires_role("admin")
    def remove(self):
        from hub.products.rules import remove_rule

        tenant_id = request.form.get("tenant_id") or None
        target = request.form.get("target", "")
        uow = request_uow()
        try:
            remove_rule(admin_ctx(), uow, tenant_id=tenant_id, target=target, seen=_seen())
        except EditConflict as exc:
            return _stale(exc, tenant_id, f"remove {target}")
        _audit("price_rule.removed", tenant_id=tenant_id, target_type="price_rule", target_id=target)
        uow.commit()
        flash(f"Rule for {target} removed.", "success")
        return redirect(url_for(".index", tenant=tenant_id))
