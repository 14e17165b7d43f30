"""The transactions client's operator reads for the admin UI: every tenant's list, dashboard stats."""
from __future__ import annotations

import datetime as dt

import pytest

from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from hub.errors import Forbidden, ValidationFailed
from hub.transactions import client as transactions

from .conftest import FUNDS, buy, drain, transaction

OPERATOR = CallContext.system(actor="admin:ops@example.com")


@pytest.fixture
def three(app, client, tenant_factory, funded):
    """Tenant A: one success, one failure; tenant B: one success. All final."""
    from hub.wallets import accounts as wallets

    other = tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=other.id)
        wallets.topup(ctx, uow, wallets.get_main_wallet(ctx, uow).id, FUNDS, "seed")
        uow.commit()
    ids = [buy(client, funded.tenant, "081200001234").json["id"], buy(client, funded.tenant, "081200009999").json["id"],
           buy(client, other, "081200001234").json["id"]]
    owners = [funded.tenant.id, funded.tenant.id, other.id]
    drain(app, until=lambda: all(transaction(app, t, i)["status"] in ("succeeded", "failed")
                                 for t, i in zip(owners, ids, strict=True)))
    return funded.tenant.id, other.id, ids


def _call(app, fn, *args, **kwargs):
    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return fn(OPERATOR if "ctx" not in kwargs else kwargs.pop("ctx"), uow, *args, **kwargs)


def test_operator_list_spans_tenants_and_filters(app, three):
    tenant_a, tenant_b, ids = three
    items, cursor = _call(app, transactions.operator_list)
    assert {i["id"] for i in items} == set(ids) and cursor is None
    assert {i["tenant_id"] for i in items} == {tenant_a, tenant_b}
    assert len(_call(app, transactions.operator_list, tenant_id=tenant_a)[0]) == 2
    assert [i["id"] for i in _call(app, transactions.operator_list, status="failed")[0]] == [ids[1]]
    assert len(_call(app, transactions.operator_list, provider_code="sandbox")[0]) == 3
    assert _call(app, transactions.operator_list, provider_code="digiflazz")[0] == []
    assert _call(app, transactions.operator_list, created_to=utcnow() - dt.timedelta(days=1))[0] == []
    first, cursor = _call(app, transactions.operator_list, limit=2)
    rest, end = _call(app, transactions.operator_list, limit=2, cursor=cursor)
    assert len(first) == 2 and len(rest) == 1 and end is None
    assert {i["id"] for i in first + rest} == set(ids)
    with pytest.raises(ValidationFailed):
        _call(app, transactions.operator_list, status="lost")


def test_operator_reads_need_the_process_scope(app, three):
    tenant_a, _, _ = three
    reader = CallContext(tenant_id=tenant_a, client_id="c", scopes=frozenset({"transactions:read"}))
    with pytest.raises(Forbidden):
        _call(app, transactions.operator_list, ctx=reader)
    with pytest.raises(Forbidden):
        _call(app, transactions.stats, since=utcnow() - dt.timedelta(hours=1), ctx=reader)


def test_stats_count_per_hour_by_status_and_rate_providers(app, three):
    stats = _call(app, transactions.stats, since=utcnow() - dt.timedelta(hours=24))
    hour = utcnow().strftime("%Y-%m-%dT%H:00")
    by_status: dict[str, int] = {}
    for row in stats["per_hour"]:
        assert row["hour"] <= hour  # an hour may have turned between the purchases and now
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
    assert by_status == {"succeeded": 2, "failed": 1}
    [sandbox] = stats["providers"]
    assert sandbox["provider_code"] == "sandbox" and sandbox["attempts"] == 3
    assert (sandbox["success"], sandbox["failed"]) == (2, 1) and sandbox["success_rate"] == pytest.approx(0.6667)
    assert sandbox["answered"] == 3 and sandbox["latency_ms_avg"] >= 0 and sandbox["latency_ms_max"] >= 0
    later = _call(app, transactions.stats, since=utcnow() + dt.timedelta(minutes=1))
    assert later == {"per_hour": [], "providers": []}


def test_stats_count_attempts_that_never_left_the_hub_apart_from_the_providers_rejections(
        app, client, funded, sandbox):
    """A purchase the provider refused (4444: out of stock) is its rejection; one the hub did
    not send (the configuration switched off, the breaker open) is counted as ``not_sent``,
    in no rate and no latency: the provider never received it."""
    from hub.providers import client as providers

    refused = buy(client, funded.tenant, "081200004444").json["id"]
    drain(app, until=lambda: transaction(app, funded.tenant.id, refused)["status"] == "failed")
    from hub.providers.models import ProviderConfig
    from hub.providers.service import PreparedConfig
    from hub.transactions.lifecycle import Outcome

    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        row = uow.session.get(ProviderConfig, sandbox)
        row.enabled = False  # what a switched-off configuration answers a purchase (not committed)
        answer = Outcome.from_result(providers.call_prepared(PreparedConfig(row), "purchase", providers.PurchaseRequest(
            ref_id="r-1", sku="TEL10", customer_no="081200001234", amount=10_000)))
    assert (answer.state, answer.not_sent) == ("rejected", True)
    from hub.transactions import lifecycle
    from hub.transactions.models import Attempt, Transaction

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:  # recorded as a purchase's answer
        trx = uow.session.get(Transaction, refused)
        attempt = Attempt(transaction_id=refused, tenant_id=funded.tenant.id, seq=2, config_id=sandbox,
                          provider_code="sandbox", provider_sku="TEL10", reference="ref-not-sent", state="sent")
        uow.session.add(attempt)
        lifecycle.apply_outcome(lifecycle.tenant_ctx(trx), uow, trx, attempt, answer, "purchase")
        uow.commit()
    [sandbox_row] = _call(app, transactions.stats, since=utcnow() - dt.timedelta(hours=1))["providers"]
    assert (sandbox_row["attempts"], sandbox_row["not_sent"], sandbox_row["rejected"]) == (2, 1, 1)
    assert sandbox_row["answered"] == 1 and sandbox_row["success_rate"] == 0.0
