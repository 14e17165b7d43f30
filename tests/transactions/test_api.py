"""POST/GET /v1/transactions and POST /v1/inquiries: the contract of docs/transactions.md, "API"."""
from __future__ import annotations

import threading
import time

from hub.context import CallContext
from hub.db import unit_of_work

from .conftest import FUNDS, buy, drain, wallet


def test_accepting_holds_the_price_and_answers_202(app, client, funded):
    response = buy(client, funded.tenant, "0812-0000-1234", ref_id="order-1")
    assert response.status_code == 202
    body = response.json
    assert body["status"] == "pending" and body["ref_id"] == "order-1"
    assert body["customer_no"] == "081200001234"  # normalized
    assert body["wallet_id"] == funded.wallet_id and body["currency"] == "IDR"
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - body["price"], body["price"])


def test_the_same_request_again_is_the_same_transaction(app, client, funded):
    first = buy(client, funded.tenant, "081200001234", ref_id="order-2")
    again = buy(client, funded.tenant, "081200001234", ref_id="order-2")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json["id"] == first.json["id"]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert money["held"] == first.json["price"]  # one hold


def test_the_same_ref_id_with_another_body_is_409(app, client, funded):
    buy(client, funded.tenant, "081200001234", ref_id="order-3")
    other = buy(client, funded.tenant, "081200005678", ref_id="order-3")
    assert other.status_code == 409
    assert other.mimetype == "application/problem+json"


def test_unknown_or_unavailable_product_and_bad_numbers_are_422(app, client, funded):
    response = buy(client, funded.tenant, "081200001234", product_code="NOPE")
    assert response.status_code == 422 and "product_code" in response.json["errors"]
    response = buy(client, funded.tenant, "0899", product_code="TEL10")
    assert response.status_code == 422 and "customer_no" in response.json["errors"]
    response = buy(client, funded.tenant, "081700001234", product_code="TEL10")  # an XL number
    assert response.status_code == 422 and "telkomsel" in response.json["errors"]["customer_no"][0]
    response = buy(client, funded.tenant, "1234", product_code="PLN20")
    assert response.status_code == 422
    assert buy(client, funded.tenant, "12345678901", product_code="PLN20").status_code == 202
    assert wallet(app, funded.tenant.id, funded.wallet_id)["held"] > 0


def test_not_enough_balance_is_402_and_leaves_nothing(app, client, tenant_factory, sandbox):
    poor = tenant_factory()
    response = buy(client, poor, "081200001234", ref_id="broke")
    assert response.status_code == 402
    assert response.mimetype == "application/problem+json"
    listed = client.get("/v1/transactions?ref_id=broke", headers=poor.headers)
    assert listed.json["items"] == []


def test_another_tenants_wallet_is_refused(app, client, funded, tenant_factory):
    other = tenant_factory()
    response = buy(client, other, "081200001234", wallet_id=funded.wallet_id)
    assert response.status_code == 422 and "wallet_id" in response.json["errors"]


def test_a_wallet_in_another_currency_is_422_before_its_funds_are_judged(app, client, funded):
    """A purchase priced in IDR paid from the tenant's USD sub-wallet is refused for its currency,
    empty or funded: before, an empty one answered 402 "0 USD available, 10557 needed" (the
    IDR price judged against USD funds, and offered to the plugins' debit veto as such)."""
    from hub.wallets import accounts as wallets

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=funded.tenant.id)
        usd = wallets.create_wallet(ctx, uow, "usd-customer", currency="USD").id
        uow.commit()
    response = buy(client, funded.tenant, "081200001234", ref_id="in-usd", wallet_id=usd)
    assert response.status_code == 422, response.json
    assert response.json["errors"]["wallet_id"] == ["the wallet holds USD, the product costs IDR"]
    assert client.get("/v1/transactions?ref_id=in-usd", headers=funded.tenant.headers).json["items"] == []
    assert wallet(app, funded.tenant.id, usd)["held"] == 0


def test_get_shows_the_timeline_and_another_tenant_gets_404(app, client, funded, live, tenant_factory):
    created = buy(client, funded.tenant, "081200001234").json
    drain(app)
    one = client.get(f"/v1/transactions/{created['id']}", headers=funded.tenant.headers)
    assert one.status_code == 200
    assert one.json["status"] == "succeeded" and one.json["serial_number"]
    kinds = [e["kind"] for e in one.json["timeline"]]
    assert kinds[0] == "status" and "attempt" in kinds and "outcome" in kinds
    assert client.get(f"/v1/transactions/{created['id']}", headers=tenant_factory().headers).status_code == 404


def test_list_filters_and_pages(app, client, funded):
    ids = [buy(client, funded.tenant, "081200001234", ref_id=f"list-{n}").json["id"] for n in range(5)]
    page = client.get("/v1/transactions?limit=2", headers=funded.tenant.headers).json
    assert [t["id"] for t in page["items"]] == ids[::-1][:2]
    seen = [t["id"] for t in page["items"]]
    while page["next_cursor"]:
        page = client.get(f"/v1/transactions?limit=2&cursor={page['next_cursor']}", headers=funded.tenant.headers).json
        seen += [t["id"] for t in page["items"]]
    assert seen == ids[::-1]
    found = client.get("/v1/transactions?ref_id=list-3", headers=funded.tenant.headers).json["items"]
    assert [t["id"] for t in found] == [ids[3]]
    assert client.get("/v1/transactions?status=succeeded", headers=funded.tenant.headers).json["items"] == []
    assert len(client.get("/v1/transactions?status=pending", headers=funded.tenant.headers).json["items"]) == 5
    assert client.get("/v1/transactions?status=bogus", headers=funded.tenant.headers).status_code == 422


def test_prefer_wait_answers_once_final(app, client, funded, live):
    """The request (in a thread here) waits on Redis while a worker completes the transaction."""
    answer = {}

    def request():
        started = time.monotonic()
        answer["response"] = client.post("/v1/transactions", json={
            "ref_id": "wait-1", "product_code": "TEL10", "customer_no": "081200001234"},
            headers={**funded.tenant.headers, "Prefer": "wait=10"})
        answer["elapsed"] = time.monotonic() - started

    waiting = threading.Thread(target=request)
    waiting.start()
    drain(app, until=lambda: not waiting.is_alive(), timeout=15)
    waiting.join()
    response = answer["response"]
    assert response.status_code == 200  # final: 200 (202 is for "still in progress")
    assert response.json["status"] == "succeeded"
    assert response.headers["Preference-Applied"] == "wait=10"
    assert answer["elapsed"] < 8


def test_prefer_wait_on_a_purchase_that_fails_at_once_is_200(app, client, funded, live):
    """9999: refused by the provider (invalid number) — final as soon as a worker has tried."""
    answer = {}

    def request():
        answer["response"] = client.post("/v1/transactions", json={
            "ref_id": "wait-3", "product_code": "TEL10", "customer_no": "081200009999"},
            headers={**funded.tenant.headers, "Prefer": "wait=10"})

    waiting = threading.Thread(target=request)
    waiting.start()
    drain(app, until=lambda: not waiting.is_alive(), timeout=15)
    waiting.join()
    assert answer["response"].status_code == 200 and answer["response"].json["status"] == "failed"


def test_product_codes_are_case_insensitive(app, client, funded):
    lower = buy(client, funded.tenant, "081200001234", ref_id="case-1", product_code="tel10")
    assert lower.status_code == 202 and lower.json["product_code"] == "TEL10"
    upper = buy(client, funded.tenant, "081200001234", ref_id="case-1", product_code="TEL10")
    assert upper.status_code == 200 and upper.json["id"] == lower.json["id"]  # one request, replayed
    mixed = buy(client, funded.tenant, "081200001234", ref_id="case-1", product_code=" Tel10 ")
    assert mixed.status_code == 200 and mixed.json["id"] == lower.json["id"]
    listed = client.get("/v1/transactions?product_code=tel10", headers=funded.tenant.headers).json["items"]
    assert [t["id"] for t in listed] == [lower.json["id"]]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert money["held"] == lower.json["price"]  # one hold


def test_prefer_wait_gives_up_after_n_seconds(app, client, funded):
    started = time.monotonic()
    response = client.post("/v1/transactions", json={"ref_id": "wait-2", "product_code": "TEL10",
                                                     "customer_no": "081200001234"},
                           headers={**funded.tenant.headers, "Prefer": "wait=1"})
    assert 0.9 <= time.monotonic() - started < 5
    assert response.status_code == 202 and response.json["status"] == "pending"


def test_postpaid_inquiry_then_payment(app, client, funded, live):
    inquiry = client.post("/v1/inquiries", json={"product_code": "PLNPOST", "customer_no": "123456789012"},
                          headers=funded.tenant.headers)
    assert inquiry.status_code == 201, inquiry.json
    bill = inquiry.json
    assert bill["amount"] > bill["details"]["bill_amount"] > 0 and bill["customer_name"]
    paid = buy(client, funded.tenant, "123456789012", product_code="PLNPOST", inquiry_id=bill["id"])
    assert paid.status_code == 202, paid.json
    assert paid.json["price"] == bill["amount"]
    drain(app)
    one = client.get(f"/v1/transactions/{paid.json['id']}", headers=funded.tenant.headers).json
    assert one["status"] == "succeeded"
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS - bill["amount"]
    again = buy(client, funded.tenant, "123456789012", product_code="PLNPOST", inquiry_id=bill["id"])
    assert again.status_code == 422  # a bill is paid once
    missing = buy(client, funded.tenant, "123456789012", product_code="PLNPOST")
    assert missing.status_code == 422 and "inquiry_id" in missing.json["errors"]


def test_client_submit_and_used_ref_ids(app, funded):
    from hub.auth import service_context
    from hub.transactions import client as transactions

    ctx = service_context(funded.tenant.ctx, "bulk")
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        accepted = transactions.submit(ctx, uow, ref_id="bulk-1", product_code="TEL10",
                                       customer_no="081200001234", source="bulk:job_1:1")
        uow.commit()
        view = accepted.transaction
        assert accepted.created and view["source"] == "bulk:job_1:1"
        assert transactions.used_ref_ids(ctx, uow, ["bulk-1", "bulk-2"]) == {"bulk-1"}
        assert transactions.validate(ctx, uow, "TEL10", "0817") is not None
        assert transactions.validate(ctx, uow, "TEL10", "081200001234") is None
        items, _ = transactions.list_(ctx, uow, source="bulk:job_1:*")
        assert [i["id"] for i in items] == [view["id"]]
    tenant_only = CallContext(tenant_id=funded.tenant.id, client_id="x", scopes=frozenset({"transactions:read"}))
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        import pytest

        from hub.errors import Forbidden
        with pytest.raises(Forbidden):
            transactions.submit(tenant_only, uow, ref_id="x", product_code="TEL10", customer_no="081200001234")
