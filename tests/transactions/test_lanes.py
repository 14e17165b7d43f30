"""API purchases before bulk rows: a bulk file's purchases wait in the provider queue's bulk
lane (``provider_bulk``), which the provider workers serve only when no API purchase waits,
so a tenant's big file never queues the API's purchases behind its rows (hub.queues)."""
from __future__ import annotations

import uuid

from rq import Queue
from sqlalchemy import select

from hub.auth import service_context
from hub.context import CallContext
from hub.db import unit_of_work
from hub.queues import with_lanes
from hub.transactions import client as transactions
from hub.transactions.models import Transaction
from hub.transactions.service import Purchase
from hub.worker import make_worker

from .conftest import buy


def _bulk_rows(app, tenant_id: str, count: int) -> list[str]:
    """``count`` purchases accepted as a bulk chunk's group is (``submit_many``, lane ``bulk``)."""
    ctx = service_context(CallContext.system(actor="tests", tenant_id=tenant_id), "bulk")
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        answers = transactions.submit_many(ctx, uow, [
            Purchase(uuid.uuid4().hex, "TEL10", "081200001234", source=f"bulk:job_lanes:{n}", lane="bulk")
            for n in range(count)])
        uow.commit()
    return [a.transaction["id"] for a in answers]


def _queued(app, name: str) -> list:
    return Queue(name, connection=app.extensions["rop"].redis).get_jobs()


def test_bulk_rows_wait_in_their_lane_and_an_api_purchase_sent_later_goes_first(app, client, live, funded, sandbox):
    bulk_ids = _bulk_rows(app, funded.tenant.id, 3)
    bulk_jobs = _queued(app, "provider_bulk")
    assert len(bulk_jobs) == 1 and len(bulk_jobs[0].args[0]) == 3  # the group's commands: one job
    assert {e["payload"]["lane"] for e in bulk_jobs[0].args[0]} == {"bulk"}
    assert _queued(app, "provider") == []
    api = buy(client, funded.tenant, "081200005678")
    assert api.status_code == 202, api.json
    api_jobs = _queued(app, "provider")
    assert len(api_jobs) == 1 and "lane" not in api_jobs[0].args[0]["payload"]

    # One job at a time, on the provider queue as the Procfile names it: its lane comes after it.
    make_worker(app, ["provider"]).work(burst=True)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        done = {t.id: t.completed_at for t in uow.session.scalars(
            select(Transaction).where(Transaction.id.in_([*bulk_ids, api.json["id"]])))}
    assert all(done.values())  # every one final
    assert done[api.json["id"]] < min(done[i] for i in bulk_ids)  # the API's purchase first


def test_a_worker_serves_a_queue_s_lanes_after_it():
    assert with_lanes(["provider"]) == ["provider", "provider_bulk"]
    assert with_lanes(["provider_bulk", "provider"]) == ["provider_bulk", "provider"]  # as asked
    assert with_lanes(["commands", "events"]) == ["commands", "events"]


def test_a_bulk_file_s_rows_reach_the_lane_and_complete_there(app, client, live, funded, sandbox):
    """Through the bulk service itself: its chunks send the rows' commands to
    ``provider_bulk`` (none to ``provider``), and a provider worker settles them there."""
    from hub.queues import GENERAL_QUEUES
    from tests.bulk.conftest import csv_body, job_view

    rows = [(f"lane-{n}", "TEL10", f"08120000{n:04d}") for n in range(1, 4)]
    response = client.post("/v1/bulk", data=csv_body(rows), headers=funded.tenant.headers, content_type="text/csv")
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    make_worker(app, list(GENERAL_QUEUES)).work(burst=True)  # validation and chunks, not the calls
    lane = _queued(app, "provider_bulk")
    assert len(lane) == 1 and len(lane[0].args[0]) == 3 and _queued(app, "provider") == []
    assert all(e["payload"]["lane"] == "bulk" for e in lane[0].args[0])
    for _ in range(20):  # the provider worker, then the outcome events for the bulk subscriber
        make_worker(app).work(burst=True)
        if job_view(app, funded.tenant.id, job_id)["status"] == "completed":
            break
    view = job_view(app, funded.tenant.id, job_id)
    assert (view["status"], view["succeeded"]) == ("completed", 3)
