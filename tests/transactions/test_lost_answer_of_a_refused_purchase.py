"""A purchase the provider refused, whose answer was lost: Digiflazz's status check (the same
purchase again) is refused the same way, which says the purchase failed at the provider.
Before, the hub read that refusal as "the check was refused", kept the outcome unknown and
the hold placed for an hour, then put the transaction in review (the fault suite's SIGKILL
of the provider worker found it)."""
from __future__ import annotations

import sys
from pathlib import Path

from hub.context import CallContext
from hub.db import unit_of_work
from hub.providers.testing import wait_for

from .conftest import FUNDS, check_now, in_flight, transaction, wallet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from provider_sim import ProviderSimulator, report  # bench/ is not a package

OPERATOR = CallContext.system(actor="cli:tests")


def test_a_lost_answer_of_a_refused_purchase_fails_it_by_its_status_check_and_releases_the_hold(
        app, client, funded, fast, sandbox, tmp_path):
    from hub.products.sync import sync_config
    from hub.providers import service as providers

    db = app.extensions["rop"].db
    records = tmp_path / "provider.sqlite"
    # It answers transactions after 2 s; the hub waits 0.5 s: the purchase's answer is lost.
    sim = ProviderSimulator(records, username="u1", api_key="k1", latency=2.0).start()
    try:
        with app.app_context():
            with unit_of_work(db) as uow:
                config_id = providers.add_config(uow, "digiflazz", "Digiflazz", settings={
                    "base_url": sim.url, "timeout": 0.5}, credentials={"username": "u1", "api_key": "k1"}).id
                providers.set_enabled(uow, sandbox, False)
                uow.commit()
            assert sync_config(OPERATOR, lambda: unit_of_work(db), config_id)["status"] == "succeeded"
        found = in_flight(app, client, funded, "081200014444", product_code="TSEL10")  # 4444: refused, rc 80
        attempt = found["attempts"][0]
        assert (attempt["config_id"], attempt["state"]) == (config_id, "unknown")
        assert wallet(app, funded.tenant.id, funded.wallet_id)["held"] == found["price"]
        reference = f"{found['id']}-1"
        received = wait_for(lambda: report(records).get(reference), timeout=15)
        assert received["state"] == "rejected"  # the provider refused it; the hub never heard

        sim.latency = 0.0
        check_now(app)
        after = transaction(app, funded.tenant.id, found["id"])
        assert after["status"] == "failed" and after["attempts"][0]["state"] == "failed"
        last = [e["detail"] for e in after["timeline"] if e["kind"] == "outcome"][-1]
        assert (last["via"], last["state"], last.get("treated_as")) == ("status_check", "failed", None)
        money = wallet(app, funded.tenant.id, funded.wallet_id)
        assert (money["available"], money["held"]) == (FUNDS, 0)  # the hold released, nothing charged
        assert report(records)[reference]["purchases"] == 1  # and never bought again
    finally:
        sim.stop()
