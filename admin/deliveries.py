"""Webhook deliveries in the admin UI: every tenant's (or one's), by state, searched, sorted
and paged; a delivery's event, payload, URL, responses and transaction; resend after a
confirmation page.

Resend is a POST with its CSRF token from the confirmation page, audited; the page's form
carries a one-time key, so a form sent twice (a double click, a reload) resends once.
"""
from __future__ import annotations

import uuid

from flask import flash, redirect, request, url_for
from flask_admin import expose
from rop_admin.base import AdminView
from rop_admin.security import admin_ctx, requires_role
from werkzeug.routing import BuildError

from hub.errors import ValidationFailed
from hub.state import current_state
from hub.web import request_uow

#: How long a resend confirmation's key is remembered (a second send of the form within it is a no-op).
RESEND_KEY_SECONDS = 24 * 3600


def related_transaction(envelope: dict | None) -> str | None:
    """The id of the transaction an event is about: a ``transaction.*`` event carries the
    transaction's view (its ``id``); other events may name a ``transaction_id``."""
    envelope = envelope or {}
    payload = envelope.get("payload") or {}
    if str(envelope.get("type", "")).startswith("transaction."):
        return payload.get("id") or payload.get("transaction_id")
    return payload.get("transaction_id")


def _transaction_link(envelope: dict | None) -> tuple[str, str] | None:
    """(id, admin URL) of the event's transaction, when there is one and the app shows transactions."""
    transaction_id = related_transaction(envelope)
    if not transaction_id:
        return None
    try:
        return transaction_id, url_for("admin_transactions.detail", transaction_id=transaction_id)
    except BuildError:  # an app without the transactions service
        return None


class DeliveriesView(AdminView):
    """Webhook deliveries: list (all tenants or one, by state, search, sort, pages), detail, resend."""

    #: The list's columns: (label, sort key or None).
    COLUMNS = (("Id", None), ("Tenant", None), ("Event", "event"), ("Status", "status"), ("Attempts", "attempts"),
               ("Next attempt", None), ("Delivered", None), ("Created", "created"))

    @expose("/")
    def index(self):
        """Every tenant's webhook deliveries (or one's): status filter, search, sortable columns, pages."""
        from rop_admin.lists import page_number, pager, sort_headers

        from hub.bus.webhooks import DELIVERY_STATUSES, operator_deliveries
        from hub.tenancy.service import list_tenants

        uow = request_uow()
        filters = {k: (request.args.get(k) or "").strip() for k in ("tenant", "status", "q")}
        result = operator_deliveries(admin_ctx(), uow, tenant_id=filters["tenant"] or None,
                                     status=filters["status"] or None, q=filters["q"] or None,
                                     sort=request.args.get("sort") or "-created", page=page_number(), per_page=50)
        return self.render("rop_admin/deliveries.html", tenants=list_tenants(uow), filters=filters,
                           statuses=DELIVERY_STATUSES, deliveries=result["rows"], sort=result["sort"],
                           columns=sort_headers(self.COLUMNS, result["sort"]), pager=pager(result, "deliveries"))

    @expose("/<tenant_id>/<delivery_id>")
    def detail(self, tenant_id: str, delivery_id: str):
        """The delivery: its event and payload, the URL, each attempt's response, the transaction."""
        from hub.bus.webhooks import delivery_detail

        found = delivery_detail(admin_ctx(tenant_id), request_uow(), delivery_id)
        return self.render("rop_admin/delivery.html", tenant_id=tenant_id, **found,
                           transaction=_transaction_link(found["envelope"]))

    @expose("/<tenant_id>/<delivery_id>/resend", methods=("GET",))
    @requires_role("operator")
    def confirm_resend(self, tenant_id: str, delivery_id: str):
        """The confirmation page: what will be sent where (nothing changes yet)."""
        from hub.bus.webhooks import delivery_detail

        found = delivery_detail(admin_ctx(tenant_id), request_uow(), delivery_id)
        return self.render("rop_admin/delivery_resend.html", tenant_id=tenant_id, key=uuid.uuid4().hex, **found)

    @expose("/<tenant_id>/<delivery_id>/resend", methods=("POST",))
    @requires_role("operator")
    def resend(self, tenant_id: str, delivery_id: str):
        """Send the delivery's event again: a new delivery, through the bus; audited."""
        from hub.bus.webhooks import resend_delivery
        from hub.tenancy.service import record_audit

        key = (request.form.get("key") or "").strip()
        if not key or len(key) > 64:
            raise ValidationFailed("resend from the confirmation page", errors={"key": ["missing"]})
        redis = current_state().redis
        slot = f"rop:admin:resend:{key}"
        if not redis.set(slot, "", nx=True, ex=RESEND_KEY_SECONDS):
            earlier = redis.get(slot)
            earlier = earlier.decode() if isinstance(earlier, bytes) else earlier
            flash(f"Already resent{' as ' + earlier if earlier else ''}: not sent again.", "warning")
            return redirect(url_for(".detail", tenant_id=tenant_id, delivery_id=earlier or delivery_id))
        try:
            ctx, uow = admin_ctx(tenant_id), request_uow()
            new = resend_delivery(ctx, uow, delivery_id)
            record_audit(ctx, uow, "webhook_delivery.resent", tenant_id=tenant_id, target_type="webhook_delivery",
                         target_id=delivery_id, after={"new_delivery": new.id, "event_id": new.event_id})
            uow.commit()
        except BaseException:
            redis.delete(slot)
            raise
        redis.set(slot, new.id, ex=RESEND_KEY_SECONDS)
        flash(f"Resent as {new.id}.", "success")
        return redirect(url_for(".detail", tenant_id=tenant_id, delivery_id=new.id))
