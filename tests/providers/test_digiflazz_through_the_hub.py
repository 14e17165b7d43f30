"""The Digiflazz plugin end to end: the hub calls the simulator, the simulator's signed
webhook reaches /callbacks/digiflazz/{config_id} over real HTTP."""
from __future__ import annotations

from rop_digiflazz.simulator import DigiflazzSimulator
from sqlalchemy import select

from hub.db import unit_of_work
from hub.providers import client, service
from hub.providers.contract import PurchaseRequest, State, StatusRequest
from hub.providers.models import ProviderCallback
from hub.providers.testing import LiveServer, wait_for


def test_pending_purchase_completed_by_a_signed_webhook_through_the_hub(app):
    state = app.extensions["rop"]
    with LiveServer(app) as hub, DigiflazzSimulator(username="hubuser", api_key="k1",
                                                   webhook_secret="wh1") as sim:
        state.extras["public_url"] = hub.url
        with app.app_context(), unit_of_work(state.db) as uow:
            row = service.add_config(uow, "digiflazz", "Digiflazz", settings={"base_url": sim.url, "testing": True},
                                     credentials={"username": "hubuser", "api_key": "k1", "webhook_secret": "wh1"})
            uow.commit()
            config_id = row.id
            sim.webhook_url = service.callback_url(row)
            result = client.purchase(uow, config_id, PurchaseRequest("trx-dg-1", "xld10", "087800001233"))
            assert result.state is State.PENDING and result.cost == 10_200

            def accepted():
                with unit_of_work(state.db) as check:
                    return [(c.accepted, c.state, c.ref_id) for c in check.session.scalars(
                        select(ProviderCallback).where(ProviderCallback.config_id == config_id)
                        .order_by(ProviderCallback.received_at))]

            assert wait_for(accepted) == [(True, "success", "trx-dg-1")]
            status = client.check_status(uow, config_id, StatusRequest("trx-dg-1", "xld10", "087800001233"))
            assert status.state is State.SUCCESS and status.serial_number
            sim.send_webhook({"ref_id": "trx-dg-1", "rc": "00"}, secret="not-the-secret")
            assert wait_for(lambda: len(accepted()) == 2)
            assert accepted()[1][0] is False
