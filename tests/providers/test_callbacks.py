"""POST /callbacks/{provider_code}/{config_id}: real HTTP callbacks from the sandbox."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from hub.bus.models import OutboxMessage
from hub.db import unit_of_work
from hub.providers import client, service
from hub.providers.contract import PurchaseRequest, State
from hub.providers.models import ProviderCallback
from hub.providers.testing import LiveServer, wait_for


@pytest.fixture
def live(app):
    with LiveServer(app) as server:
        app.extensions["rop"].extras["public_url"] = server.url
        yield server


def _callbacks(app):
    with unit_of_work(app.extensions["rop"].db) as uow:
        return [{"accepted": r.accepted, "reason": r.reason, "state": r.state, "ref_id": r.ref_id}
                for r in uow.session.scalars(select(ProviderCallback))]


def test_sandbox_pending_purchase_is_completed_by_a_real_signed_callback(app, live):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        row = service.add_config(uow, "sandbox", "Sandbox", settings={"callback_delay": 0.05},
                                 credentials={"callback_secret": "cb-secret-1"})
        uow.commit()
        result = client.purchase(uow, row.id, PurchaseRequest("trx-8888", "TEL10", "081200008888"))
        assert result.state is State.PENDING
    received = wait_for(lambda: _callbacks(app))
    assert received[0] == {"accepted": True, "reason": "", "state": "success", "ref_id": "trx-8888"}
    with unit_of_work(app.extensions["rop"].db) as uow:
        published = [m.envelope for m in uow.session.scalars(select(OutboxMessage))
                     if m.type == "provider.callback_received"]
    assert published and published[0]["payload"]["ref_id"] == "trx-8888"


def test_an_unauthentic_callback_is_rejected_and_recorded(app, client):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        row = service.add_config(uow, "sandbox", "Sandbox", credentials={"callback_secret": "cb-secret-2"})
        uow.commit()
        config_id = row.id
    body = json.dumps({"ref_id": "trx-1", "rc": "00"})
    response = client.post(f"/callbacks/sandbox/{config_id}", data=body,
                           headers={"Content-Type": "application/json", "X-Sandbox-Signature": "forged"})
    assert response.status_code == 403
    assert response.content_type == "application/problem+json"
    response = client.post("/callbacks/sandbox/pcf_missing", data=body)
    assert response.status_code == 403
    rows = _callbacks(app)
    assert sorted((r["accepted"], r["reason"]) for r in rows) == [
        (False, "bad signature"), (False, "unknown provider configuration")]
