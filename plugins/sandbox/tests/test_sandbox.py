"""The sandbox provider: installed, its code table, its test numbers, real HTTP callbacks."""
from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
from rop_sandbox.plugin import CATALOG, CODE_TABLE, SIGNATURE_HEADER, SandboxProvider, sign

from hub.providers.contract import (
    CallbackRejected,
    InquiryRequest,
    PurchaseRequest,
    State,
    StatusRequest,
)
from hub.providers.testing import ContractCase, LiveServer, ProviderContractTests, view, wait_for


def test_plugin_is_installed():
    eps = {ep.name: ep for ep in entry_points(group="rop")}
    assert "sandbox" in eps
    assert eps["sandbox"].dist.name == "rop-provider-sandbox"
    from hub.plugins import build_plugin_manager

    assert build_plugin_manager().providers["sandbox"] is SandboxProvider


def make(callback_url=None, **settings):
    return SandboxProvider(view("sandbox", settings={"callback_delay": 0.05, **settings},
                                credentials={"callback_secret": "s3cret"}, callback_url=callback_url))


@pytest.mark.parametrize("code,state", sorted(CODE_TABLE.items()))
def test_every_sandbox_code_maps_to_its_state(code, state):
    assert make().map_code(code) is state


EXPECTED = {
    "081200009999": State.FAILED, "081200004444": State.REJECTED, "081200008888": State.PENDING,
    "081200007777": State.PENDING, "081200006666": State.UNKNOWN, "081200005555": State.UNKNOWN,
    "081200003333": State.SUCCESS, "081200001234": State.SUCCESS, "081200002222": State.UNKNOWN,
}
STATUS = {
    "081200009999": State.FAILED, "081200004444": State.REJECTED, "081200008888": State.SUCCESS,
    "081200007777": State.FAILED, "081200006666": State.SUCCESS, "081200005555": State.FAILED,
    "081200003333": State.REFUNDED, "081200001234": State.SUCCESS, "081200002222": State.NOT_FOUND,
}


@pytest.mark.parametrize("number", sorted(EXPECTED))
def test_test_numbers_choose_the_outcome_and_status_says_the_final_one(number):
    provider = make()
    result = provider.purchase(PurchaseRequest("r-" + number, "TEL10", number))
    assert result.state is EXPECTED[number]
    status = provider.check_status(StatusRequest("r-" + number, "TEL10", number))
    assert status.state is STATUS[number]


def test_success_carries_cost_reference_and_serial_number():
    result = make().purchase(PurchaseRequest("r1", "PLN20", "12345678901"))
    assert result.state is State.SUCCESS
    assert result.cost == CATALOG["PLN20"].cost
    assert result.provider_ref == "SBX-r1" and result.serial_number


def test_catalog_covers_operators_pln_ewallets_games_and_bills():
    categories = {(i.category, i.brand) for i in CATALOG.values()}
    for expected in [("pulsa", "telkomsel"), ("pulsa", "indosat"), ("pulsa", "xl"), ("data", "xl"),
                     ("pln", "pln"), ("ewallet", "gopay"), ("ewallet", "ovo"), ("ewallet", "dana"),
                     ("game", "mobile legends"), ("bill", "pln"), ("bill", "bpjs")]:
        assert expected in categories


def test_postpaid_inquiry_gives_the_bill():
    result = make().inquiry(InquiryRequest("q1", "BPJS", "8888001234567"))
    assert result.state is State.SUCCESS and result.data["amount"] > 0


def test_fault_rate_one_makes_every_ordinary_purchase_unknown():
    provider = make(fault_rate=1.0, seed=1)
    assert provider.purchase(PurchaseRequest("f1", "TEL10", "081211112222")).state is State.UNKNOWN


def _receiver():
    received = []

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        received.append(({k[5:].replace("_", "-").title(): v for k, v in environ.items()
                          if k.startswith("HTTP_")}, environ["wsgi.input"].read(length)))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]
    return app, received


@pytest.mark.parametrize("number,final", [("081200008888", State.SUCCESS), ("081200007777", State.FAILED),
                                          ("081200003333", State.REFUNDED)])
def test_callbacks_are_signed_http_posts_that_parse_callback_accepts(number, final):
    app, received = _receiver()
    with LiveServer(app) as server:
        provider = make(callback_url=server.url + "/cb")
        provider.purchase(PurchaseRequest("cb-" + number, "TEL10", number))
        wait_for(lambda: received)
    headers, body = received[0]
    assert headers[SIGNATURE_HEADER.title()] == sign("s3cret", body)
    result = provider.parse_callback(headers, body)
    assert result.state is final and result.ref_id == "cb-" + number


def test_the_callback_secret_has_no_default_and_without_one_callbacks_go_unsigned():
    """There is no constant to forge with: the hub generates each configuration's secret. A
    configuration without one signs nothing; the hub knows (``callback_secret_setting``) and
    only checks the status of such a callback's reference."""
    assert SandboxProvider.callback_secret_setting == "callback_secret"
    unsigned = SandboxProvider(view("sandbox", settings={"callback_delay": 0.05}))
    assert unsigned.opts["callback_secret"] is None
    app, received = _receiver()
    with LiveServer(app) as server:
        unsigned.config.callback_url = server.url + "/cb"
        unsigned.purchase(PurchaseRequest("cb-unsigned", "TEL10", "081200008888"))
        wait_for(lambda: received)
    headers, body = received[0]
    assert SIGNATURE_HEADER.title() not in headers
    assert unsigned.parse_callback(headers, body).ref_id == "cb-unsigned"


def test_a_forged_callback_is_rejected():
    body = json.dumps({"ref_id": "x", "rc": "00"}).encode()
    with pytest.raises(CallbackRejected):
        make().parse_callback({SIGNATURE_HEADER: sign("wrong", body)}, body)


def test_simulated_timeouts_are_marked_transport_failures_and_answers_are_not():
    provider = make()
    assert provider.purchase(PurchaseRequest("t1", "TEL10", "081200006666")).transport_failure
    assert provider.purchase(PurchaseRequest("t2", "TEL10", "081200002222")).transport_failure
    assert not provider.purchase(PurchaseRequest("t3", "TEL10", "081200009999")).transport_failure
    assert not provider.check_status(StatusRequest("t2", "TEL10", "081200002222")).transport_failure


class TestSandboxContract(ProviderContractTests):
    @pytest.fixture
    def contract_case(self, callback_inbox):
        return ContractCase(make_provider=lambda base_url: make(callback_url=callback_inbox.url),
                            callbacks=callback_inbox, sku="TEL10", success_no="081212345678",
                            failed_no="081200009999", pending_no="081200008888", not_found_no="081200002222",
                            postpaid_sku="PLNPOST", postpaid_no="123456789012")
