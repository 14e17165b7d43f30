"""Four-eyes: an operator's top-up or adjustment above the four-eyes amount, or past their
daily total, waits for a second operator — in the admin UI and the CLI alike — and is
applied exactly once when approved."""
from __future__ import annotations

import json
import re
import threading

import pytest
from sqlalchemy import select

from hub.context import CallContext
from hub.db import unit_of_work
from hub.wallets.limits import MoneySettings

M = 1_000_000  # a million rupiah


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory()


def _available(app, tenant) -> int:
    from hub.wallets import accounts

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        wallet = accounts.get_main_wallet(tenant.operator, uow)
        uow.commit()
        return wallet.available


def _audit(app, prefix: str) -> list[tuple[str, str, dict]]:
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(e.action, e.actor, e.after) for e in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id))]


def _wallet_path(client, admin_kit, tenant) -> str:
    """The tenant's main wallet page: opened with the wallets page's Open main wallet button
    (viewing the page creates no wallet)."""
    token = admin_kit.csrf_from(client, f"/admin/wallets/?tenant={tenant.id}")
    opened = client.post(f"/admin/wallets/{tenant.id}/open", data={"csrf_token": token})
    assert opened.status_code == 302, opened.get_data(as_text=True)
    return opened.headers["Location"]


def _post_money(client, admin_kit, path, kind, amount, reason, ref):
    token = admin_kit.csrf_from(client, path)
    return client.post(f"{path}/{kind}", data={"csrf_token": token, "ref": ref, "amount": str(amount),
                                                 "reason": reason, "confirm": "1"}, follow_redirects=True)


def test_a_large_admin_topup_waits_for_a_second_admin(app, client, admin_kit, tenant):
    admin_kit.make_admin(app, "alice@example.com", role="operator")
    admin_kit.make_admin(app, "bob@example.com", role="operator")
    admin_kit.login(client, "alice@example.com")
    path = _wallet_path(client, admin_kit, tenant)
    page = _post_money(client, admin_kit, path, "topup", 150 * M, "wire from BCA 77", "big-1").get_data(as_text=True)
    assert "Not applied yet" in page and "four-eyes amount 100,000,000 IDR" in page
    assert _available(app, tenant) == 0
    approval_id = re.search(r"(apr_[0-9a-f]+)", page).group(1)
    listing = client.get("/admin/approvals/").get_data(as_text=True)
    assert approval_id in listing and "IDR 150,000,000" in listing and "yours: another admin decides" in listing
    # the admin who asked cannot approve it, even by posting the form by hand
    token = admin_kit.csrf_from(client, "/admin/approvals/")
    own = client.post(f"/admin/approvals/{approval_id}/approve", data={"csrf_token": token}, follow_redirects=True)
    assert "a second operator must approve it" in own.get_data(as_text=True)
    assert _available(app, tenant) == 0
    # a second admin approves: applied once
    client.post("/admin/logout", data={"csrf_token": token})
    admin_kit.login(client, "bob@example.com")
    token = admin_kit.csrf_from(client, "/admin/approvals/")
    done = client.post(f"/admin/approvals/{approval_id}/approve", data={"csrf_token": token, "note": "statement ok"},
                       follow_redirects=True)
    assert f"{approval_id} approved" in done.get_data(as_text=True)
    assert _available(app, tenant) == 150 * M
    again = client.post(f"/admin/approvals/{approval_id}/approve", data={"csrf_token": token}, follow_redirects=True)
    assert "is approved already (by admin:bob@example.com)" in again.get_data(as_text=True)
    assert _available(app, tenant) == 150 * M
    actions = [(action, actor) for action, actor, _ in _audit(app, "wallet.")]
    assert actions == [("wallet.approval_requested", "admin:alice@example.com"),
                       ("wallet.topped_up", "admin:bob@example.com"),
                       ("wallet.approval_approved", "admin:bob@example.com")]
    approved = _audit(app, "wallet.approval_approved")[0][2]
    assert approved["requested_by"] == "admin:alice@example.com" and approved["note"] == "statement ok"


def test_a_rejected_adjustment_moves_nothing(app, client, admin_kit, tenant, run):
    from hub.wallets import accounts

    wallet = run(accounts.get_main_wallet, tenant.operator)
    admin_kit.make_admin(app, "alice@example.com", role="operator")
    admin_kit.make_admin(app, "bob@example.com", role="operator")
    admin_kit.login(client, "alice@example.com")
    page = _post_money(client, admin_kit, _wallet_path(client, admin_kit, tenant), "adjust", 120 * M, "bonus", "adj-1")
    approval_id = re.search(r"(apr_[0-9a-f]+)", page.get_data(as_text=True)).group(1)
    client.post("/admin/logout", data={"csrf_token": admin_kit.csrf_from(client, "/admin/approvals/")})
    admin_kit.login(client, "bob@example.com")
    token = admin_kit.csrf_from(client, "/admin/approvals/")
    client.post(f"/admin/approvals/{approval_id}/reject", data={"csrf_token": token, "note": "no such bonus"})
    assert _available(app, tenant) == 0
    assert [a for a, _, _ in _audit(app, "wallet.")] == ["wallet.approval_requested", "wallet.approval_rejected"]
    assert wallet.id in client.get("/admin/approvals/").get_data(as_text=True)


def test_splitting_an_amount_does_not_escape_the_daily_total(app, client, admin_kit, tenant):
    """Three top-ups of 80 M by one admin: each below the four-eyes amount, but the third takes
    the admin's day to 240 M, above the daily 200 M: it waits. Pending ones count too."""
    admin_kit.make_admin(app, "alice@example.com", role="operator")
    admin_kit.login(client, "alice@example.com")
    path = _wallet_path(client, admin_kit, tenant)
    for n in range(2):
        page = _post_money(client, admin_kit, path, "topup", 80 * M, f"part {n}", f"split-{n}").get_data(as_text=True)
        assert "Topped up IDR 80,000,000" in page
    third = _post_money(client, admin_kit, path, "topup", 80 * M, "part 2", "split-2").get_data(as_text=True)
    assert "Not applied yet" in third and "total today would be 240,000,000 IDR" in third
    fourth = _post_money(client, admin_kit, path, "topup", 1000, "small", "split-3").get_data(as_text=True)
    assert "Not applied yet" in fourth  # 160 M applied + 80 M pending + 1,000 > 200 M
    assert _available(app, tenant) == 160 * M


def test_the_cli_asks_a_second_operator_too(app, run_rop, tenant, client, admin_kit):
    """The CLI's operator is the account the command runs as; a second operator (here an admin
    in the admin UI) approves. Setting USER or LOGNAME does not make the same account a second
    operator: before, ``USER=bob rop wallets approvals approve`` applied one's own top-up."""
    from hub.cli.base import operator_name

    me = f"cli:{operator_name()}"

    def rop(user, *args):
        return run_rop(*args, env={"LOGNAME": user, "USER": user, "LNAME": user, "USERNAME": user})

    asked = rop("alice", "wallets", "topup", "--tenant", tenant.slug, str(500 * M), "--reason", "wire 9")
    assert asked.returncode == 0, asked.stderr
    approval_id = re.search(r"pending approval (apr_[0-9a-f]+)", asked.stdout).group(1)
    assert "500,000,000 IDR" in asked.stdout and _available(app, tenant) == 0
    listed = rop("bob", "wallets", "approvals", "list", "--json")
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["requested_by"], row["status"]) == (approval_id, me, "pending")
    for user in ("alice", "bob"):  # the same account, whatever the environment says
        own = rop(user, "wallets", "approvals", "approve", approval_id)
        assert own.returncode == 1 and own.stderr.count("\n") == 1 and "a second operator must" in own.stderr
        assert _available(app, tenant) == 0
    admin_kit.make_admin(app, "bob@example.com", role="operator")
    admin_kit.login(client, "bob@example.com")
    token = admin_kit.csrf_from(client, "/admin/approvals/")
    page = client.post(f"/admin/approvals/{approval_id}/approve", data={"csrf_token": token, "note": "seen it"},
                       follow_redirects=True).get_data(as_text=True)
    assert f"{approval_id} approved" in page
    assert _available(app, tenant) == 500 * M
    assert rop("carol", "wallets", "approvals", "reject", approval_id).returncode == 1  # decided already
    assert [(a, actor) for a, actor, _ in _audit(app, "wallet.approval")] == [
        ("wallet.approval_requested", me), ("wallet.approval_approved", "admin:bob@example.com")]


def test_concurrent_approvals_apply_it_exactly_once(app, tenant, run, verify):
    from hub.errors import Conflict
    from hub.wallets import approvals

    app.extensions["rop"].extras["wallets.limits"] = MoneySettings(four_eyes_amount=10, four_eyes_daily=10)
    alice = CallContext.system(actor="admin:alice@example.com", tenant_id=tenant.id)
    pending = run(approvals.submit, alice, "topup", None, 5000, "wire", "race-1")
    assert pending["status"] == "pending"
    approval_id = pending["approval"]["id"]
    barrier, outcomes = threading.Barrier(4), []

    def approve(n: int) -> None:
        ctx = CallContext.system(actor=f"admin:approver{n}@example.com")
        barrier.wait()
        try:
            outcomes.append(run(approvals.approve, ctx, approval_id)["status"])
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=approve, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["approved", "conflict", "conflict", "conflict"]
    assert _available(app, tenant) == 5000
    assert verify()["ok"]


def test_an_approval_that_cannot_apply_stays_pending(app, tenant, run):
    """A debit approved when the wallet cannot cover it: 402, and it is still pending."""
    from hub.errors import InsufficientFunds
    from hub.wallets import accounts, approvals

    app.extensions["rop"].extras["wallets.limits"] = MoneySettings(four_eyes_amount=10, four_eyes_daily=10)
    wallet = run(accounts.get_main_wallet, tenant.operator)
    alice = CallContext.system(actor="admin:alice@example.com", tenant_id=tenant.id)
    pending = run(approvals.submit, alice, "adjustment", wallet.id, -500, "claw back", "adj-x")
    with pytest.raises(InsufficientFunds):
        run(approvals.approve, CallContext.system(actor="admin:bob@example.com"), pending["approval"]["id"])
    [row] = run(approvals.list_approvals, CallContext.system(actor="tests"))
    assert row["status"] == "pending"


def test_concurrent_submissions_of_one_operator_cannot_all_pass_under_the_daily_total(app, tenant, run, verify):
    """Six top-ups of 80 by one operator at once, daily total 200: two apply, four wait —
    whichever order the database lets them in (on PostgreSQL the operator's advisory lock)."""
    from hub.wallets import approvals

    app.extensions["rop"].extras["wallets.limits"] = MoneySettings(four_eyes_amount=100, four_eyes_daily=200)
    barrier, outcomes = threading.Barrier(6), []

    def submit(n: int) -> None:
        ctx = CallContext.system(actor="admin:alice@example.com", tenant_id=tenant.id)
        barrier.wait()
        outcomes.append(run(approvals.submit, ctx, "topup", None, 80, "wire", f"split-race-{n}")["status"])

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["applied"] * 2 + ["pending"] * 4
    assert _available(app, tenant) == 160
    assert verify()["ok"]


def test_decided_approvals_are_listed_however_many_wait(app, tenant, run):
    """The admin page's and ``--status decided``'s list: pending ones no longer take its rows."""
    from hub.wallets import approvals

    app.extensions["rop"].extras["wallets.limits"] = MoneySettings(four_eyes_amount=10, four_eyes_daily=10)
    alice = CallContext.system(actor="admin:alice@example.com", tenant_id=tenant.id)
    first = run(approvals.submit, alice, "topup", None, 500, "wire", "decided-0")["approval"]["id"]
    run(approvals.reject, CallContext.system(actor="admin:bob@example.com"), first)
    for n in range(1, 4):
        run(approvals.submit, alice, "topup", None, 500, "wire", f"decided-{n}")
    listed = run(approvals.list_approvals, CallContext.system(actor="tests"), status="decided", limit=2)
    assert [(a["id"], a["status"]) for a in listed] == [(first, "rejected")]
    mine = run(approvals.list_approvals, CallContext.system(actor="tests"), status=None, ids=[first], limit=5)
    assert [a["id"] for a in mine] == [first]


def test_the_daily_total_counts_one_currency(app, tenant, run):
    """Minor units of different currencies are never added up against one threshold."""
    from hub.wallets import accounts, approvals

    app.extensions["rop"].extras["wallets.limits"] = MoneySettings(four_eyes_amount=1000, four_eyes_daily=1000)
    usd = run(accounts.create_wallet, tenant.operator, "usd-float", currency="USD")
    alice = CallContext.system(actor="admin:alice@example.com", tenant_id=tenant.id)
    assert run(approvals.submit, alice, "topup", None, 900, "wire", "idr-1")["status"] == "applied"
    assert run(approvals.submit, alice, "topup", usd.id, 900, "wire", "usd-1")["status"] == "applied"
    assert run(approvals.submit, alice, "topup", usd.id, 200, "wire", "usd-2")["status"] == "pending"
