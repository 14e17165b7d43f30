"""Bulk selection in the admin lists: the ticked transactions re-checked or resolved, the
ticked approvals approved or rejected, the ticked bulk jobs cancelled — each after a
confirmation page (count, rows, total), each row once through the single action's use-case
(audited the same way), rows not eligible reported; the four-eyes rule per row; a viewer
neither sees the boxes nor may post."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from hub.db import unit_of_work
from tests.transactions.conftest import FUNDS, buy, drain, transaction, wallet

M = 1_000_000


def _audit(app, prefix: str) -> list[tuple[str, str, str, dict]]:
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(e.action, e.actor, e.target_id, e.after) for e in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id))]


def _in_review(app, client, funded, count: int) -> list[str]:
    """``count`` purchases the sandbox leaves pending, in review (no callback reaches us here)."""
    ids = [buy(client, funded.tenant, "081200008888").json["id"] for _ in range(count)]
    drain(app, until=lambda: all(transaction(app, funded.tenant.id, i)["status"] == "review" for i in ids))
    return ids


def test_transactions_resolved_in_bulk_after_a_confirmation(app, client, admin_kit, funded, settings):
    review = _in_review(app, client, funded, 2)
    done = buy(client, funded.tenant, "081200001234").json["id"]
    drain(app, until=lambda: transaction(app, funded.tenant.id, done)["status"] == "succeeded")
    prices = [transaction(app, funded.tenant.id, i)["price"] for i in review]
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    listing = client.get("/admin/transactions/").get_data(as_text=True)
    assert 'class="select-all"' in listing and f'name="ids" value="{review[0]}"' in listing
    assert "Resolve selected as failed" in listing and "select-all.js" in listing
    token = admin_kit.csrf_from(client, "/admin/transactions/")
    url = "/admin/transactions/selected"

    nothing = client.post(url, data={"csrf_token": token, "action": "failed", "reason": "x"}, follow_redirects=True)
    assert "Nothing selected: tick the transactions" in nothing.get_data(as_text=True)
    no_reason = client.post(url, data={"csrf_token": token, "action": "failed", "ids": review}, follow_redirects=True)
    assert "a reason is required" in no_reason.get_data(as_text=True)

    form = {"csrf_token": token, "action": "failed", "reason": "provider portal: failed", "ids": [*review, done],
            "back": "/admin/transactions/?status=review"}
    page = client.post(url, data=form).get_data(as_text=True)
    assert "Resolve as failed: 2 transaction(s)?" in page
    assert "<th>Transactions</th><td>2</td>" in page and f"IDR {sum(prices):,}" in page
    assert all(i in page for i in review) and f"{done} (succeeded, not review)" in page  # reported, not skipped
    assert page.count('name="ids"') == 2 and done not in re.findall(r'name="ids" value="([^"]+)"', page)
    assert [transaction(app, funded.tenant.id, i)["status"] for i in review] == ["review", "review"]  # asked only
    assert _audit(app, "transaction.resolve") == []

    confirm = dict(form, ids=[*review, done, review[0]], confirm="1")  # a row twice, an ineligible one
    response = client.post(url, data=confirm)
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/transactions/?status=review")
    shown = client.get("/admin/transactions/").get_data(as_text=True)
    assert "2 transaction(s) resolved as failed" in shown and f"Not resolved as failed (1): {done}" in shown
    assert [transaction(app, funded.tenant.id, i)["status"] for i in review] == ["failed", "failed"]
    assert transaction(app, funded.tenant.id, done)["status"] == "succeeded"
    resolved = _audit(app, "transaction.resolve")
    assert sorted(t for _, _, t, _ in resolved) == sorted(review)  # each once
    assert {(actor, after["reason"]) for _, actor, _, after in resolved} == {("admin:op@example.com",
                                                                              "provider portal: failed")}
    held = wallet(app, funded.tenant.id, funded.wallet_id)
    assert held["held"] == 0 and held["available"] == FUNDS - transaction(app, funded.tenant.id, done)["price"]

    again = client.post(url, data=dict(form, ids=review), follow_redirects=True).get_data(as_text=True)
    assert "None of the selected transactions can be resolved as failed" in again


def test_transactions_rechecked_in_bulk(app, client, admin_kit, funded, settings):
    review = _in_review(app, client, funded, 2)
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    token = admin_kit.csrf_from(client, "/admin/transactions/")
    form = {"csrf_token": token, "action": "recheck", "ids": review}
    page = client.post("/admin/transactions/selected", data=form).get_data(as_text=True)
    assert "Re-check: 2 transaction(s)?" in page and _audit(app, "transaction.recheck") == []
    client.post("/admin/transactions/selected", data=dict(form, confirm="1"))
    assert sorted(t for _, _, t, _ in _audit(app, "transaction.recheck")) == sorted(review)


def _wallet_path(client, admin_kit, tenant) -> str:
    token = admin_kit.csrf_from(client, f"/admin/wallets/?tenant={tenant.id}")
    return client.post(f"/admin/wallets/{tenant.id}/open", data={"csrf_token": token}).headers["Location"]


def _ask_topup(client, admin_kit, email, path, amount, ref) -> str:
    admin_kit.login(client, email)
    token = admin_kit.csrf_from(client, path)
    page = client.post(f"{path}/topup", data={"csrf_token": token, "ref": ref, "amount": str(amount),
                                              "reason": f"wire {ref}", "confirm": "1"}, follow_redirects=True)
    client.post("/admin/logout", data={"csrf_token": admin_kit.csrf_from(client, "/admin/approvals/")})
    return re.search(r"(apr_[0-9a-f]+)", page.get_data(as_text=True)).group(1)


def _statuses(app) -> dict[str, str]:
    from hub.context import CallContext
    from hub.wallets import approvals

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return {a["id"]: a["status"] for a in approvals.list_approvals(CallContext.system(actor="tests"), uow,
                                                                         status=None)}


def _available(app, tenant) -> int:
    from hub.wallets import accounts

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return accounts.get_main_wallet(tenant.operator, uow).available


def test_approvals_in_bulk_keep_the_four_eyes_rule_per_row(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    for name in ("alice", "bob", "carol"):
        admin_kit.make_admin(app, f"{name}@example.com", role="operator")
    admin_kit.login(client, "alice@example.com")
    path = _wallet_path(client, admin_kit, tenant)
    client.post("/admin/logout", data={"csrf_token": admin_kit.csrf_from(client, "/admin/approvals/")})
    alices = [_ask_topup(client, admin_kit, "alice@example.com", path, 150 * M, f"a-{n}") for n in (1, 2)]
    bobs = _ask_topup(client, admin_kit, "bob@example.com", path, 120 * M, "b-1")
    carols = _ask_topup(client, admin_kit, "carol@example.com", path, 110 * M, "c-1")

    admin_kit.login(client, "bob@example.com")
    listing = client.get("/admin/approvals/").get_data(as_text=True)
    assert "Approve selected" in listing and f'name="ids" value="{bobs}"' in listing
    token = admin_kit.csrf_from(client, "/admin/approvals/")
    url = "/admin/approvals/selected"
    nothing = client.post(url, data={"csrf_token": token, "decision": "approve"}, follow_redirects=True)
    assert "Nothing selected: tick the approvals" in nothing.get_data(as_text=True)

    form = {"csrf_token": token, "decision": "approve", "note": "statements ok", "ids": [*alices, bobs]}
    page = client.post(url, data=form).get_data(as_text=True)
    assert "Approve 2 approval(s)?" in page and "<th>Approvals</th><td>2</td>" in page
    assert "IDR 300,000,000" in page and f"{bobs} (you asked for it" in page
    assert bobs not in re.findall(r'name="ids" value="([^"]+)"', page)
    assert _audit(app, "wallet.approval_approved") == []  # the confirmation page moves nothing

    # Confirm with bob's own one posted too (a crafted form): refused and reported; the others once.
    done = client.post(url, data=dict(form, ids=[*alices, bobs, alices[0]], confirm="1"), follow_redirects=True)
    text = done.get_data(as_text=True)
    assert "2 approval(s) approved" in text and f"Not approved (1): {bobs} (admin:bob@example.com asked" in text
    approved = _audit(app, "wallet.approval_approved")
    assert sorted(t for _, _, t, _ in approved) == sorted(alices)
    assert {actor for _, actor, _, _ in approved} == {"admin:bob@example.com"}
    assert _statuses(app) == {alices[0]: "approved", alices[1]: "approved", bobs: "pending", carols: "pending"}
    assert _available(app, tenant) == 300 * M  # applied once each

    reject = {"csrf_token": token, "decision": "reject", "note": "no wire seen", "ids": [carols, alices[0]]}
    page = client.post(url, data=reject).get_data(as_text=True)
    assert "Reject 1 approval(s)?" in page and f"{alices[0]} (not pending" in page
    client.post(url, data=dict(reject, ids=[carols], confirm="1"))
    assert [t for _, _, t, _ in _audit(app, "wallet.approval_rejected")] == [carols]
    assert _statuses(app)[carols] == "rejected" and _available(app, tenant) == 300 * M


@pytest.mark.skipif("hub.bulk" not in __import__("hub.app", fromlist=["x"]).SERVICE_PACKAGES, reason="no bulk")
def test_bulk_jobs_cancelled_in_bulk(app, client, admin_kit, funded, fast):
    from tests.bulk.conftest import csv_body, job_view, run_until_settled

    tenant = funded.tenant

    def submit(prefix):
        body = csv_body([(f"{prefix}-1", "TEL10", "081200001234"), (f"{prefix}-2", "TEL10", "081200001234")])
        return client.post("/v1/bulk", data=body, headers=tenant.headers, content_type="text/csv").get_json()["id"]

    finished = submit("f")
    run_until_settled(app, tenant.id, finished, lambda v: v["status"] == "completed")
    waiting = [submit("w"), submit("x")]  # no worker ran: still validating
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    listing = client.get("/admin/bulk/").get_data(as_text=True)
    assert "Cancel selected" in listing and f'value="{tenant.id}/{waiting[0]}"' in listing
    token = admin_kit.csrf_from(client, "/admin/bulk/")
    url = "/admin/bulk/selected/cancel"
    nothing = client.post(url, data={"csrf_token": token}, follow_redirects=True)
    assert "Nothing selected: tick the bulk jobs" in nothing.get_data(as_text=True)
    form = {"csrf_token": token, "ids": [f"{tenant.id}/{j}" for j in (*waiting, finished)]}
    page = client.post(url, data=form).get_data(as_text=True)
    assert "Cancel 2 bulk job(s)?" in page and f"{finished} (completed: nothing left to cancel)" in page
    assert [job_view(app, tenant.id, j)["status"] for j in waiting] == ["validating", "validating"]
    client.post(url, data=dict(form, confirm="1"))
    assert [job_view(app, tenant.id, j)["status"] for j in waiting] == ["cancelled", "cancelled"]
    assert job_view(app, tenant.id, finished)["status"] == "completed"
    assert sorted(t for _, _, t, _ in _audit(app, "bulk_job.cancelled")) == sorted(waiting)


def test_a_viewer_sees_no_boxes_and_may_not_post(app, client, admin_kit, funded, settings):
    review = _in_review(app, client, funded, 1)
    admin_kit.login(client, admin_kit.make_admin(app, "look@example.com", role="viewer"))
    for path in ("/admin/transactions/", "/admin/approvals/", "/admin/bulk/"):
        page = client.get(path).get_data(as_text=True)
        assert 'name="ids"' not in page and 'class="select-all"' not in page and "selected…" not in page
    token = admin_kit.csrf_from(client, "/admin/")
    for url, extra in (("/admin/transactions/selected", {"action": "failed", "reason": "x"}),
                       ("/admin/approvals/selected", {"decision": "approve"}), ("/admin/bulk/selected/cancel", {})):
        response = client.post(url, data={"csrf_token": token, "ids": review, "confirm": "1", **extra})
        assert response.status_code == 403
    assert transaction(app, funded.tenant.id, review[0])["status"] == "review"
