"""The fault suite's provider (bench/provider_sim.py) through the hub's Digiflazz plugin: every
test number's outcome, status checks by the same reference, lost answers and lost requests,
signed webhooks to the hub's callback URL, and records that outlive the simulator process."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.cache import refcache
from hub.db import unit_of_work
from hub.providers import client, service
from hub.providers.contract import PurchaseRequest, State, StatusRequest
from hub.providers.models import ProviderCallback
from hub.providers.testing import LiveServer, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from provider_sim import ProviderSimulator, report  # bench/ is not a package

PURCHASES = {  # number → the purchase's answer, then the status check's
    "081200010101": (State.SUCCESS, State.SUCCESS),
    "081200019999": (State.FAILED, State.FAILED),
    # refused (rc 80): the status check, the same purchase again, is refused the same way,
    # which says the purchase under that reference failed at the provider
    "081200014444": (State.REJECTED, State.FAILED),
    "081200016666": (State.UNKNOWN, State.SUCCESS),  # delivered, the answer lost
    "081200015555": (State.UNKNOWN, State.FAILED),
    "081200012222": (State.UNKNOWN, State.SUCCESS),  # lost on the way: the status check buys it
}


@pytest.fixture
def hub_and_sim(app, tmp_path):
    state = app.extensions["rop"]
    with LiveServer(app) as hub:
        state.extras["public_url"] = hub.url
        with app.app_context(), unit_of_work(state.db) as uow:
            row = service.add_config(uow, "digiflazz", "Simulator", settings={"base_url": "http://127.0.0.1:1"},
                                     credentials={"username": "u1", "api_key": "k1", "webhook_secret": "w1"})
            uow.commit()
            sim = ProviderSimulator(tmp_path / "sim.sqlite", username="u1", api_key="k1", webhook_secret="w1",
                                    webhook_url=service.callback_url(row), callback_delay=0.05).start()
            row.settings = {"base_url": sim.url}
            refcache().bump(uow, "providers")  # as the service's own changes do
            uow.commit()
            try:
                yield app, uow, row.id, sim, tmp_path / "sim.sqlite"
            finally:
                sim.stop()


def test_each_number_answers_as_documented_and_a_status_check_is_the_same_reference(hub_and_sim):
    _app, uow, config_id, _sim, records = hub_and_sim
    for n, (number, (bought, checked)) in enumerate(PURCHASES.items()):
        ref = f"trx-sim-{n}"
        result = client.purchase(uow, config_id, PurchaseRequest(ref, "tsel10", number))
        assert result.state is bought, (number, result)
        status = client.check_status(uow, config_id, StatusRequest(ref, "tsel10", number))
        assert status.state is checked, (number, status)
        if checked is State.SUCCESS:
            assert status.serial_number and status.cost == 10_150
    received = report(records)
    assert set(received) == {f"trx-sim-{n}" for n in range(len(PURCHASES))}
    assert all(r["purchases"] == 1 for r in received.values())
    assert [(ref, r["status_checks"], r["dropped"]) for ref, r in received.items() if r["status_checks"] != 1] \
        == [("trx-sim-5", 0, 1)]  # its status check was the first request to arrive: the purchase
    assert received["trx-sim-3"]["state"] == "success" and received["trx-sim-4"]["state"] == "failed"
    # Another number under a known reference: refused, and not a second purchase.
    refused = client.check_status(uow, config_id, StatusRequest("trx-sim-0", "tsel10", "081299999999"))
    assert refused.state is State.REJECTED and refused.provider_code == "49"
    # A reference it never received: Digiflazz's protocol makes the status check a purchase.
    first = client.check_status(uow, config_id, StatusRequest("trx-sim-new", "tsel10", "081200010101"))
    assert first.state is State.SUCCESS
    assert report(records)["trx-sim-new"]["purchases"] == 1


def test_later_outcomes_reach_the_hub_as_signed_webhooks_and_the_records_outlive_the_simulator(hub_and_sim):
    app, uow, config_id, sim, records = hub_and_sim
    db = app.extensions["rop"].db
    pending = client.purchase(uow, config_id, PurchaseRequest("trx-sim-p", "tsel10", "081200018888"))
    assert pending.state is State.PENDING
    refunded = client.purchase(uow, config_id, PurchaseRequest("trx-sim-r", "tsel10", "081200013333"))
    assert refunded.state is State.SUCCESS

    def callbacks():
        with unit_of_work(db) as check:
            found = {c.ref_id: (c.accepted, c.state) for c in check.session.scalars(
                select(ProviderCallback).where(ProviderCallback.config_id == config_id))}
        return found if len(found) == 2 else None

    # 74 (refund) is mapped as a failure after success; the hub turns that into a refund.
    assert wait_for(callbacks, timeout=15) == {"trx-sim-p": (True, "success"), "trx-sim-r": (True, "failed")}
    sim.stop()
    again = ProviderSimulator(records, username="u1", api_key="k1").start()
    try:
        received = report(records)
        assert {ref: r["state"] for ref, r in received.items()} == {"trx-sim-p": "success", "trx-sim-r": "refunded"}
        row = again._row("trx-sim-p")
        assert row["rc"] == "00" and row["later_at"] is None
    finally:
        again.stop()
