"""The Digiflazz connector against a local simulator of its protocol, over real HTTP."""
from __future__ import annotations

import hashlib
import json
import socket
from importlib.metadata import entry_points

import pytest
from rop_digiflazz.plugin import (
    CODE_TABLE,
    REQUEST_REFUSED,
    DigiflazzProvider,
    DigiflazzSettings,
    sign,
    webhook_signature,
)
from rop_digiflazz.simulator import DigiflazzSimulator

from hub.providers.contract import (
    CallbackRejected,
    InquiryRequest,
    PurchaseRequest,
    State,
    StatusRequest,
)
from hub.providers.testing import ContractCase, LiveServer, ProviderContractTests, view, wait_for


def test_plugin_is_installed():
    assert "digiflazz" in {ep.name for ep in entry_points(group="rop")}
    from hub.plugins import build_plugin_manager

    assert build_plugin_manager().providers["digiflazz"] is DigiflazzProvider


# Digiflazz's rc list, code by code: 00 success; 01 (timeout) unknown; 02 (Transaksi Gagal) failed; 03, 99 pending; 40-49, 61-69, 80-83, 87, 88 rejected;
# 50-60, 70-74, 84-86 failed; anything else (undefined) unknown.
def _expected(code: int) -> State:
    if code == 0:
        return State.SUCCESS
    if code in (3, 99):
        return State.PENDING
    if 40 <= code <= 49 or 61 <= code <= 69 or 80 <= code <= 83 or code in (87, 88):
        return State.REJECTED
    if code == 2 or 50 <= code <= 60 or 70 <= code <= 74 or 84 <= code <= 86:
        return State.FAILED
    return State.UNKNOWN


@pytest.mark.parametrize("code", [f"{c:02d}" for c in range(100)])
def test_every_rc_maps_to_its_normalized_state(code):
    provider = DigiflazzProvider(view("digiflazz", credentials={"username": "u", "api_key": "k"}))
    assert provider.map_code(code) is _expected(int(code))
    assert provider.map_code(" " + code) is _expected(int(code))  # loose typing: stray spaces


def test_code_table_lists_exactly_the_documented_codes():
    assert {code for code, state in CODE_TABLE.items()} == \
        {f"{c:02d}" for c in range(100) if _expected(c) is not State.UNKNOWN} | {"01"}


def test_signatures_are_md5_of_username_key_and_word():
    assert sign("user", "key", "depo") == hashlib.md5(b"userkeydepo").hexdigest()


@pytest.fixture
def receiver():
    received = []

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        received.append((headers, environ["wsgi.input"].read(length)))
        start_response("200 OK", [])
        return [b"ok"]

    with LiveServer(app) as server:
        server.received = received
        yield server


@pytest.fixture
def sim(receiver):
    with DigiflazzSimulator(username="hubuser", api_key="dev-key", webhook_url=receiver.url + "/cb",
                            webhook_secret="whsec") as simulator:
        yield simulator


def make_at(base_url, **settings):
    return DigiflazzProvider(view("digiflazz", settings={"base_url": base_url, "testing": True, **settings},
                                  credentials={"username": "hubuser", "api_key": "dev-key",
                                               "webhook_secret": "whsec"}))


def make(sim, **settings):
    return make_at(sim.url, **settings)


@pytest.mark.parametrize("number,state,status", [
    ("087800001230", State.SUCCESS, State.SUCCESS),
    ("087800001232", State.FAILED, State.FAILED),  # rc 02
    ("087800001233", State.PENDING, State.SUCCESS),
    ("087800001234", State.PENDING, State.FAILED),
])
def test_testing_numbers_and_status_by_the_same_ref_id(sim, receiver, number, state, status):
    provider = make(sim)
    result = provider.purchase(PurchaseRequest("ref-" + number, "xld10", number))
    assert result.state is state
    assert result.cost == 10_200 and result.ref_id == "ref-" + number  # "price" came as a string
    if state is State.PENDING:
        wait_for(lambda: receiver.received)
    again = provider.check_status(StatusRequest("ref-" + number, "xld10", number))
    assert again.state is status
    assert sum(1 for r in sim.requests if r["body"].get("ref_id") == "ref-" + number) == 2
    assert all(r["body"]["sign"] == sign("hubuser", "dev-key", "ref-" + number) for r in sim.requests)


@pytest.mark.parametrize("number,final", [("087800001233", State.SUCCESS), ("087800001234", State.FAILED)])
def test_webhooks_are_verified_with_hmac_sha1(sim, receiver, number, final):
    provider = make(sim)
    provider.purchase(PurchaseRequest("wh-" + number, "xld10", number))
    headers, body = wait_for(lambda: receiver.received)[0]
    assert headers["X-Hub-Signature"] == webhook_signature("whsec", body)
    result = provider.parse_callback(headers, body)
    assert result.state is final and result.ref_id == "wh-" + number
    assert result.data["event"] == "update"
    if final is State.SUCCESS:
        assert result.serial_number
    with pytest.raises(CallbackRejected):
        provider.parse_callback({**headers, "X-Hub-Signature": webhook_signature("wrong", body)}, body)
    with pytest.raises(CallbackRejected):
        provider.parse_callback(headers, body.replace(b"wh-", b"xx-"))


def test_price_list_balance_and_loose_typing(sim):
    provider = make(sim)
    items = {i.sku: i for i in provider.catalog()}
    assert items["xld10"].cost == 10_200 and items["tsel25"].cost == 25_150
    assert items["pln20"].available is False and items["pln"].postpaid
    assert provider.balance().cost == 5_000_000
    assert {r["body"]["sign"] for r in sim.requests if r["path"] == "/v1/price-list"} == \
        {sign("hubuser", "dev-key", "pricelist")}


def test_postpaid_inquiry_then_pay_with_the_same_ref_id(sim):
    provider = make(sim)
    bill = provider.inquiry(InquiryRequest("pasca-1", "pln", "530000000001"))
    assert bill.state is State.SUCCESS and bill.data["amount"] == 53_200
    assert bill.data["customer_name"] == "SIMULATED CUSTOMER" and bill.data["period"] == "202611"
    paid = provider.purchase(PurchaseRequest("pasca-1", "pln", "530000000001", amount=53_200))
    assert paid.state is State.SUCCESS and paid.serial_number
    assert [r["body"].get("commands") for r in sim.requests] == ["inq-pasca", "pay-pasca"]


def test_wrong_key_is_rejected_and_reused_ref_id_is_rejected(sim):
    bad = DigiflazzProvider(view("digiflazz", settings={"base_url": sim.url},
                                 credentials={"username": "hubuser", "api_key": "wrong"}))
    assert bad.purchase(PurchaseRequest("k1", "xld10", "087800001230")).provider_code == "41"
    provider = make(sim)
    provider.purchase(PurchaseRequest("dup", "xld10", "087800001230"))
    reused = provider.purchase(PurchaseRequest("dup", "xld10", "087811112222"))
    assert reused.state is State.REJECTED and reused.provider_code == "49"


def test_a_status_check_refused_for_the_purchase_is_its_failure_and_a_refused_request_says_nothing(sim):
    """Digiflazz's status check is the purchase again: refused with a code about the purchase
    (rc 80, the product disturbed), it says this reference failed at the provider: FAILED
    (the hub releases the hold). Refused as a request (a bad key, another purchase's ref_id),
    it says nothing about the purchase: REJECTED, which the hub reads as "the check was
    refused" for a status check."""
    provider = make(sim)
    sim.prepaid_list[0]["seller_product_status"] = False  # xld10 disturbed at the seller
    assert provider.purchase(PurchaseRequest("r80", "xld10", "087800001230")).state is State.REJECTED
    checked = provider.check_status(StatusRequest("r80", "xld10", "087800001230"))
    assert (checked.state, checked.provider_code, checked.transport_failure) == (State.FAILED, "80", False)

    sim.prepaid_list[0]["seller_product_status"] = True
    provider.purchase(PurchaseRequest("ok", "xld10", "087800001230"))
    other_number = provider.check_status(StatusRequest("ok", "xld10", "087811112222"))
    assert (other_number.state, other_number.provider_code) == (State.REJECTED, "49")
    wrong_key = DigiflazzProvider(view("digiflazz", settings={"base_url": sim.url},
                                       credentials={"username": "hubuser", "api_key": "wrong"}))
    refused = wrong_key.check_status(StatusRequest("ok", "xld10", "087800001230"))
    assert (refused.state, refused.provider_code) == (State.REJECTED, "41")
    assert provider.check_status(StatusRequest("ok", "xld10", "087800001230")).state is State.SUCCESS


@pytest.mark.parametrize("code", [f"{c:02d}" for c in range(100)])
def test_a_status_check_answered_with_a_rejection_code_fails_the_purchase_unless_it_refused_the_request(
        sim, code):
    provider = make(sim)
    sim.transactions["ref-" + code] = {"ref_id": "ref-" + code, "customer_no": "087800001230",
                                       "buyer_sku_code": "xld10", "rc": code, "status": "Gagal", "message": "x",
                                       "sn": "", "price": "10200"}
    state = provider.check_status(StatusRequest("ref-" + code, "xld10", "087800001230")).state
    expected = _expected(int(code))
    if expected is State.REJECTED:
        expected = State.REJECTED if code in REQUEST_REFUSED else State.FAILED
    assert state is expected
    assert REQUEST_REFUSED <= {c for c, s in CODE_TABLE.items() if s is State.REJECTED}


def test_5xx_garbage_and_timeouts_are_unknown_and_never_raise(sim):
    provider = make(sim, timeout=0.3)
    sim.fail_next = [502]
    assert provider.purchase(PurchaseRequest("u1", "xld10", "087800001230")).state is State.UNKNOWN
    sim.slow_next = 1.0
    assert provider.purchase(PurchaseRequest("u2", "xld10", "087800001230")).state is State.UNKNOWN


def test_an_unreachable_provider_is_not_sent_so_it_may_be_routed_elsewhere():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = DigiflazzProvider(view("digiflazz", settings={"base_url": f"http://127.0.0.1:{port}"},
                                      credentials={"username": "u", "api_key": "k"}))
    result = provider.purchase(PurchaseRequest("n1", "xld10", "087800001230"))
    assert result.state is State.REJECTED and result.data["not_sent"]
    assert provider.check_status(StatusRequest("n1", "xld10", "087800001230")).state is State.UNKNOWN


def test_the_webhook_secret_has_no_default_and_without_one_a_webhook_is_only_read(sim):
    """No secret, nothing to verify with: the webhook is read (its ref_id), and the hub, which
    knows the configuration has no ``webhook_secret`` (``callback_secret_setting``), only
    checks that reference's status with it."""
    assert DigiflazzProvider.callback_secret_setting == "webhook_secret"
    assert DigiflazzSettings().load({"username": "u", "api_key": "k"}).get("webhook_secret") is None
    provider = DigiflazzProvider(view("digiflazz", settings={"base_url": sim.url},
                                      credentials={"username": "u", "api_key": "k"}))
    body = json.dumps({"data": {"ref_id": "x", "rc": "00"}}).encode()
    assert provider.parse_callback({}, body).ref_id == "x"


class TestDigiflazzContract(ProviderContractTests):
    @pytest.fixture
    def contract_case(self, callback_inbox):
        with DigiflazzSimulator(username="hubuser", api_key="dev-key", webhook_url=callback_inbox.url,
                                webhook_secret="whsec") as simulator:
            yield ContractCase(
                make_provider=lambda base_url: make_at(base_url, timeout=1.0),
                simulator_url=simulator.url, callbacks=callback_inbox,
                sku="xld10", success_no="087800001230", failed_no="087800001232", pending_no="087800001233",
                postpaid_sku="pln", postpaid_no="530000000001")
