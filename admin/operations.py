"""Transactions and bulk jobs: lists, details, operator actions, a live progress bar.

Transactions are read and acted on through ``hub.transactions.client`` (a platform
operator's context: every tenant; the service audits re-check, resolve and refund);
bulk jobs through ``hub.bulk.client`` with the tenant's context (cancel audited here).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from flask import Response, flash, jsonify, redirect, request, stream_with_context, url_for
from flask_admin import expose
from rop_admin.base import AdminView, confirmed
from rop_admin.formatting import money
from rop_admin.security import admin_ctx, requires_role

from hub.errors import HubError, ValidationFailed
from hub.state import current_state
from hub.web import request_uow


def _tenants() -> list:
    from hub.tenancy.service import list_tenants

    return list_tenants(request_uow())


def _day(field: str, *, end: bool = False) -> dt.datetime | None:
    """A ``YYYY-MM-DD`` query argument as midnight in the admin's timezone (the next midnight
    for an end date)."""
    from rop_admin.formatting import admin_timezone

    raw = (request.args.get(field) or "").strip()
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{field} must be a date (YYYY-MM-DD)", errors={field: ["invalid date"]}) from None
    return dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(), tzinfo=admin_timezone())


class TransactionsView(AdminView):
    """Every tenant's transactions: filters, detail with the timeline, re-check, resolve, refund."""

    scripts = ("transaction-status.js",)

    #: The list's columns: (label, sort key or None).
    COLUMNS = (("Created", "created"), ("Id", None), ("Tenant", None), ("Ref id", "ref"), ("Product", "product"),
               ("Customer", "customer"), ("Status", "status"), ("Price", "price"), ("Provider", None),
               ("Serial number", None))

    @expose("/")
    def index(self):
        """Every tenant's transactions (or one's): filters that combine, a search, sortable
        columns, previous/next with the total."""
        from rop_admin.lists import page_number, pager, sort_headers

        from hub.transactions import client as transactions
        from hub.transactions.models import STATUSES

        filters = {k: (request.args.get(k) or "").strip() for k in ("tenant", "status", "provider", "q",
                                                                       "from", "to")}
        result = transactions.operator_page(
            admin_ctx(), request_uow(), tenant_id=filters["tenant"] or None, status=filters["status"] or None,
            provider_code=filters["provider"] or None, q=filters["q"] or None,
            created_from=_day("from"), created_to=_day("to", end=True),
            sort=request.args.get("sort") or "-created", page=page_number(), per_page=50)
        host = current_state().extras.get("plugins")
        return self.render("rop_admin/transactions.html", items=result["items"], filters=filters,
                           statuses=STATUSES, providers=sorted(getattr(host, "providers", {}) or {}),
                           tenants=_tenants(), columns=sort_headers(self.COLUMNS, result["sort"]),
                           pager=pager(result, "transactions"), sort=result["sort"])

    @expose("/<transaction_id>")
    def detail(self, transaction_id: str):
        from hub.transactions import client as transactions

        trx = transactions.get(admin_ctx(), request_uow(), transaction_id)
        return self.render("rop_admin/transaction.html", trx=trx)

    @expose("/<transaction_id>/status.json")
    def status_json(self, transaction_id: str):
        """What the transaction page polls while the transaction is in flight."""
        from hub.transactions import client as transactions

        trx = transactions.get(admin_ctx(), request_uow(), transaction_id)
        response = jsonify({"id": trx["id"], "status": trx["status"], "updated_at": trx["updated_at"]})
        response.headers["Cache-Control"] = "no-store"
        return response

    @expose("/<transaction_id>/recheck", methods=("POST",))
    @requires_role("operator")
    def recheck(self, transaction_id: str):
        """Ask the provider again (a status check command for a worker); audited by the service."""
        from hub.transactions import client as transactions

        uow = request_uow()
        transactions.recheck(admin_ctx(), uow, transaction_id)
        uow.commit()
        flash("Status check requested: the timeline shows its answer once a worker has asked.", "success")
        return redirect(url_for(".detail", transaction_id=transaction_id))

    @expose("/<transaction_id>/resolve", methods=("POST",))
    @requires_role("operator")
    def resolve(self, transaction_id: str):
        """Settle a ``review`` transaction: succeeded captures the hold, failed voids it —
        after a confirmation page echoing the amount, the wallet and the tenant."""
        from hub.transactions import client as transactions

        uow = request_uow()
        outcome, reason = request.form.get("outcome", ""), request.form.get("reason", "")
        if not confirmed():
            if outcome not in ("succeeded", "failed"):
                raise ValidationFailed("outcome must be succeeded or failed", errors={"outcome": ["invalid"]})
            trx = self._preview(uow, transaction_id, "review", reason)
            amount = money(trx["price"], trx["currency"])
            effect = (f"charges the tenant {amount} (the hold is captured)" if outcome == "succeeded"
                      else f"releases the {amount} held (the tenant is not charged)")
            return self._confirm(trx, f"Resolve {trx['id']} as {outcome}?", [("Outcome", outcome), ("Effect", effect)],
                                 {"outcome": outcome, "reason": reason}, f"Resolve as {outcome}")
        trx = transactions.resolve(admin_ctx(), uow, transaction_id, outcome, reason)
        uow.commit()
        flash(f"Resolved as {trx['status']}.", "success")
        return redirect(url_for(".detail", transaction_id=transaction_id))

    @expose("/<transaction_id>/refund", methods=("POST",))
    @requires_role("operator")
    def refund(self, transaction_id: str):
        """Refund a succeeded transaction (the capture is reversed through the ledger), after
        a confirmation page echoing the amount, the wallet and the tenant."""
        from hub.transactions import client as transactions

        uow = request_uow()
        reason = request.form.get("reason", "")
        if not confirmed():
            trx = self._preview(uow, transaction_id, "succeeded", reason)
            amount = money(trx["price"], trx["currency"])
            return self._confirm(trx, f"Refund {amount}?", [("Effect", f"{amount} back to the tenant's wallet")],
                                 {"reason": reason}, f"Refund {amount}")
        trx = transactions.refund(admin_ctx(), uow, transaction_id, reason)
        uow.commit()
        flash(f"Refunded {money(trx['price'], trx['currency'])}.", "success")
        return redirect(url_for(".detail", transaction_id=transaction_id))

    #: The actions on the ticked transactions: (the statuses they apply to, verb, button).
    SELECTED: ClassVar[dict[str, tuple[tuple[str, ...], str, str]]] = {"recheck": (("review", "processing"), "re-checked", "Re-check"),
                "failed": (("review",), "resolved as failed", "Resolve as failed"),
                "succeeded": (("review",), "resolved as succeeded", "Resolve as succeeded")}

    @expose("/selected", methods=("POST",))
    @requires_role("operator")
    def selected(self):
        """Re-check, or resolve as failed or succeeded, the ticked transactions: a confirmation
        page first (count, rows, total; the rows not eligible and why), then each row once
        through the single action's use-case (audited the same way)."""
        from rop_admin import selection

        from hub.tenancy.service import get_tenant
        from hub.transactions import client as transactions

        action = request.form.get("action", "")
        if action not in self.SELECTED:
            raise ValidationFailed("action must be recheck, failed or succeeded", errors={"action": ["invalid"]})
        statuses, verb, label = self.SELECTED[action]
        back = selection.back()
        ids = selection.selected_ids("transactions", label.lower())
        if ids is None:
            return redirect(back)
        reason = request.form.get("reason", "")
        if action != "recheck" and not reason.strip():
            raise ValidationFailed("a reason is required", errors={"reason": ["a reason is required"]})
        uow, ctx = request_uow(), admin_ctx()
        if confirmed():
            if action == "recheck":
                done, refused = selection.each(uow, ids, lambda i: transactions.recheck(ctx, uow, i))
            else:
                done, refused = selection.each(uow, ids, lambda i: transactions.resolve(ctx, uow, i, action, reason))
            uow.commit()
            selection.report(f"{len(done)} transaction(s) {verb}"
                             + (f": {', '.join(t['id'] for t in done)}." if done else "."), refused, verb)
            return redirect(back)
        eligible, refused = [], []
        for trx_id in ids:
            try:
                trx = transactions.get(ctx, uow, trx_id)
            except HubError as exc:
                refused.append((trx_id, str(getattr(exc, "detail", None) or exc)))
                continue
            if trx["status"] in statuses:
                eligible.append(trx)
            else:
                refused.append((trx_id, f"{trx['status']}, not {' or '.join(statuses)}"))
        if not eligible:
            flash(f"None of the selected transactions can be {verb}: {selection.refusals(refused)}.", "error")
            return redirect(back)
        tenants = {t: get_tenant(uow, t).name for t in {trx["tenant_id"] for trx in eligible}}
        effect = {"recheck": "asks each transaction's provider again (the timelines show the answers)",
                  "failed": "releases each amount held (the tenants are not charged)",
                  "succeeded": "charges each tenant its amount (the holds are captured)"}[action]
        rows = [("Action", f"{label}: {effect}"),
                ("Transactions", len(eligible)),
                ("Total", selection.total((t["price"], t["currency"]) for t in eligible))]
        rows += [(t["id"], (f"{money(t['price'], t['currency'])}: {t['product_code']} for {t['customer_no']}, "
                            f"{tenants[t['tenant_id']]}, {t['status']}")) for t in eligible]
        if action != "recheck":
            rows.append(("Reason", reason))
        return self.confirm_page(
            f"{label}: {len(eligible)} transaction(s)?", rows,
            fields={"action": action, "reason": reason, "ids": [t["id"] for t in eligible]}, cancel=back,
            confirm_label=f"{label} {len(eligible)} transaction(s)",
            warning=(f"Not eligible, left as they are ({len(refused)}): {selection.refusals(refused)}."
                     if refused else None))

    def _preview(self, uow, transaction_id: str, status: str, reason: str) -> dict[str, Any]:
        """The transaction a confirmation page is about, refused as the action would be."""
        from hub.errors import Conflict
        from hub.transactions import client as transactions

        if not reason.strip():
            raise ValidationFailed("a reason is required", errors={"reason": ["a reason is required"]})
        trx = transactions.get(admin_ctx(), uow, transaction_id)
        if trx["status"] != status:
            action = "refunded" if status == "succeeded" else "resolved"
            raise Conflict(f"transaction {trx['id']} is {trx['status']}; only a {status} one can be {action}")
        return trx

    def _confirm(self, trx: dict[str, Any], title: str, rows: list, fields: dict[str, Any], label: str):
        from hub.tenancy.service import get_tenant

        tenant = get_tenant(request_uow(), trx["tenant_id"])
        return self.confirm_page(title, [
            ("Transaction", f"{trx['id']} ({trx['product_code']} for {trx['customer_no']}, ref {trx['ref_id']})"),
            ("Amount", money(trx["price"], trx["currency"])), ("Wallet", trx["wallet_id"]),
            ("Tenant", f"{tenant.name} ({tenant.slug})"), *rows, ("Reason", fields["reason"])],
            fields=fields, cancel=url_for(".detail", transaction_id=trx["id"]), confirm_label=label)


# -- bulk jobs -------------------------------------------------------------------------------
#: Job counters shown on the page and updated live.
COUNTERS = ("total", "valid", "invalid", "submitted", "succeeded", "failed", "refunded", "review", "cancelled",
            "skipped", "pending")
_SETTLED = ("succeeded", "failed", "refunded", "review", "cancelled", "skipped")


def progress(job: dict[str, Any]) -> dict[str, Any]:
    """The progress of a job view: ``percent`` of its valid rows settled, and ``done``."""
    settled = sum(job[name] for name in _SETTLED)
    done = job["status"] in ("completed", "rejected") or (job["status"] == "cancelled" and not job["pending"])
    if job["status"] == "completed":
        percent = 100
    elif job["valid"]:
        percent = min(100, settled * 100 // job["valid"])
    else:
        percent = 100 if done else 0
    return {"id": job["id"], "status": job["status"], "percent": percent, "done": done,
            "counts": {name: job[name] for name in COUNTERS}, "amount": job["amount"],
            "amount_succeeded": job["amount_succeeded"], "currency": job["currency"]}


#: The queues a bulk job's progress needs served: its chunks, the purchases' commands, the
#: events that settle its rows, the provider calls (its rows' in the provider queue's lane).
BULK_QUEUES = ("bulk", "commands", "events", "provider", "provider_bulk")


def stall_reasons(job: dict[str, Any]) -> list[str]:
    """Why a job that is not done makes no progress, from the live operations figures: the
    queues it needs that no live worker serves, a backlog its chunks wait behind, every
    provider breaker open. Empty for a job that is done or moving."""
    from rop_admin.charts import STALLED_AFTER, operations_health
    from rop_admin.formatting import duration

    if job["status"] not in ("validating", "queued", "running") or (job["status"] != "validating"
                                                                     and not job["pending"]):
        return []
    ops = operations_health(request_uow(), dead_letters=0)
    queues = {q["name"]: q for q in ops["queues"]}
    reasons = [f"no live worker serves the {name} queue (start `rop worker`"
               f"{' --queues provider' if name.startswith('provider') else ''})"
               for name in BULK_QUEUES if not queues[name]["served"]]
    bulk = queues["bulk"]
    if bulk["served"] and bulk["waiting"] and (bulk["oldest_age_s"] or 0) > STALLED_AFTER:
        reasons.append(f"its chunks wait behind {bulk['waiting']:,} job(s) in the bulk queue "
                       f"(the oldest for {duration(bulk['oldest_age_s'])})")
    lane, api = queues["provider_bulk"], queues["provider"]
    if lane["served"] and lane["waiting"] and (lane["oldest_age_s"] or 0) > STALLED_AFTER:
        reasons.append(f"its purchases wait behind {lane['waiting']:,} job(s) in the bulk lane of the provider queue "
                       f"(the oldest for {duration(lane['oldest_age_s'])})"
                       + (f"; API purchases go first ({api['waiting']:,} job(s) waiting)"
                          if api["waiting"] else ""))
    if ops["configs"] and len(ops["breakers_open"]) == ops["configs"]:
        reasons.append("every provider configuration's breaker is open: no purchase can be sent")
    return reasons


class BulkJobsView(AdminView):
    """A tenant's bulk jobs: progress, counts, rows, results file, cancel."""

    scripts = ("bulk-progress.js",)

    #: The list's columns: (label, sort key or None).
    COLUMNS = (("Created", "created"), ("Job", None), ("Tenant", None), ("File", "file"), ("Status", "status"),
               ("Progress", None), ("Total", "total"), ("Valid", None), ("Invalid", None), ("Succeeded", None),
               ("Failed", None), ("Pending", None), ("Amount", None))

    @expose("/")
    def index(self):
        """Every tenant's bulk jobs (or one's): status filter, search, sortable columns, pages."""
        from rop_admin.lists import page_number, pager, sort_headers

        from hub.bulk import client as bulk

        filters = {k: (request.args.get(k) or "").strip() for k in ("tenant", "status", "q")}
        result = bulk.operator_page(admin_ctx(), request_uow(), tenant_id=filters["tenant"] or None,
                                    status=filters["status"] or None, q=filters["q"] or None,
                                    sort=request.args.get("sort") or "-created", page=page_number(), per_page=50)
        return self.render("rop_admin/bulk_jobs.html", tenants=_tenants(), filters=filters, sort=result["sort"],
                           jobs=[dict(j, progress=progress(j)) for j in result["items"]],
                           columns=sort_headers(self.COLUMNS, result["sort"]), pager=pager(result, "jobs"))

    @expose("/<tenant_id>/<job_id>")
    def detail(self, tenant_id: str, job_id: str):
        from hub.bulk import client as bulk

        ctx, uow = admin_ctx(tenant_id), request_uow()
        job = bulk.get(ctx, uow, job_id)
        row_status = request.args.get("rows") or None
        rows, _ = bulk.items(ctx, uow, job_id, status=row_status, limit=100)
        return self.render("rop_admin/bulk_job.html", tenant_id=tenant_id, job=job, progress=progress(job),
                           counters=COUNTERS, rows=rows, row_status=row_status or "", stalled=stall_reasons(job))

    @expose("/<tenant_id>/<job_id>/progress.json")
    def progress_json(self, tenant_id: str, job_id: str):
        """What the progress bar polls."""
        from hub.bulk import client as bulk

        response = jsonify(progress(bulk.get(admin_ctx(tenant_id), request_uow(), job_id)))
        response.headers["Cache-Control"] = "no-store"
        return response

    @expose("/<tenant_id>/<job_id>/results.csv")
    def results(self, tenant_id: str, job_id: str):
        """The results file, streamed page by page."""
        from hub.bulk import client as bulk

        ctx = admin_ctx(tenant_id)
        bulk.get(ctx, request_uow(), job_id)  # 404 before the stream starts
        lines = bulk.results_csv(ctx, request_uow(), job_id)
        return Response(stream_with_context(lines), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{job_id}-results.csv"', "Cache-Control": "no-store"})

    @expose("/<tenant_id>/<job_id>/cancel", methods=("POST",))
    @requires_role("operator")
    def cancel(self, tenant_id: str, job_id: str):
        """Cancel: rows not sent yet are not sent; rows in flight finish."""
        uow = request_uow()
        job = _cancel_job(uow, tenant_id, job_id)
        uow.commit()
        flash(f"Job {job_id} cancelled: {job['cancelled']} row(s) will not be sent.", "success")
        return redirect(url_for(".detail", tenant_id=tenant_id, job_id=job_id))

    @expose("/selected/cancel", methods=("POST",))
    @requires_role("operator")
    def cancel_selected(self):
        """Cancel the ticked jobs (``ids``: ``tenant_id/job_id``): a confirmation page first
        (count, jobs, their total amount; the jobs that cannot be cancelled and why), then each
        job once, audited as the single cancel."""
        from rop_admin import selection

        from hub.bulk import client as bulk

        back = selection.back()
        ids = selection.selected_ids("bulk jobs", "cancel")
        if ids is None:
            return redirect(back)
        uow = request_uow()
        if confirmed():
            done, refused = selection.each(uow, ids, lambda key: _cancel_job(uow, *_job_key(key)))
            uow.commit()
            selection.report(f"{len(done)} job(s) cancelled: {sum(j['cancelled'] for j in done):,} row(s) will "
                             "not be sent.", refused, "cancelled")
            return redirect(back)
        eligible, refused = [], []
        for key in ids:
            try:
                tenant_id, job_id = _job_key(key)
                job = bulk.get(admin_ctx(tenant_id), uow, job_id)
            except HubError as exc:
                refused.append((key, str(getattr(exc, "detail", None) or exc)))
                continue
            if job["status"] in ("validating", "queued", "running"):
                eligible.append(dict(job, key=key))
            else:
                refused.append((job_id, f"{job['status']}: nothing left to cancel"))
        if not eligible:
            flash(f"None of the selected jobs can be cancelled: {selection.refusals(refused)}.", "error")
            return redirect(back)
        rows = [("Jobs", len(eligible)), ("Total", selection.total((j["amount"] or 0, j["currency"]) for j in eligible))]
        rows += [(j["id"], f"{j['file_name'] or 'no file name'}, {j['status']}, {j['pending']:,} row(s) not sent "
                           f"yet, " + (money(j["amount"], j["currency"]) if j["amount"] is not None
                                     else "amount not known yet (validating)")) for j in eligible]
        return self.confirm_page(
            f"Cancel {len(eligible)} bulk job(s)?", rows, fields={"ids": [j["key"] for j in eligible]}, cancel=back,
            confirm_label=f"Cancel {len(eligible)} job(s)",
            warning="Rows not sent yet are not sent; rows in flight finish."
                    + (f" Not eligible, left as they are ({len(refused)}): {selection.refusals(refused)}."
                       if refused else ""))


def _job_key(key: str) -> tuple[str, str]:
    """A ticked job's ``tenant_id/job_id``."""
    tenant_id, _, job_id = key.partition("/")
    if not tenant_id or not job_id:
        raise ValidationFailed(f"{key!r} is not a job (tenant_id/job_id)", errors={"ids": ["invalid"]})
    return tenant_id, job_id


def _cancel_job(uow, tenant_id: str, job_id: str) -> dict[str, Any]:
    """Cancel one job with the tenant's context; audited (a job cancelled already: no entry)."""
    from hub.bulk import client as bulk
    from hub.tenancy.service import record_audit

    ctx = admin_ctx(tenant_id)
    before = bulk.get(ctx, uow, job_id)
    job = bulk.cancel(ctx, uow, job_id)
    if before["status"] != "cancelled":
        record_audit(ctx, uow, "bulk_job.cancelled", tenant_id=tenant_id, target_type="bulk_job",
                     target_id=job_id, before={"status": before["status"]},
                     after={"status": job["status"], "cancelled": job["cancelled"]})
    return job


def available_views() -> list:
    """The views of the services this app runs (``hub.app.SERVICE_PACKAGES``)."""
    from hub.app import SERVICE_PACKAGES

    views = []
    if "hub.transactions" in SERVICE_PACKAGES:
        views.append(TransactionsView(name="Transactions", endpoint="admin_transactions", url="transactions"))
    if "hub.bulk" in SERVICE_PACKAGES:
        views.append(BulkJobsView(name="Bulk jobs", endpoint="admin_bulk", url="bulk"))
    return views
