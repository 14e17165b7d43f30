"""The dashboard's operations panel: queue backlogs with the oldest waiting job's age, workers
alive, dead letters, open provider breakers, transactions in review — each linking to its list."""
from __future__ import annotations

import datetime as dt
import re
import time

from tests.admin.conftest import seed_transactions


def _enqueue_waiting(app, queue_name: str, count: int, age_s: float) -> None:
    """``count`` real RQ jobs in ``queue_name`` that no worker takes, enqueued ``age_s`` ago."""
    from rq import Queue

    from hub.queues import backlogs

    redis = app.extensions["rop"].redis
    q = Queue(queue_name, connection=redis)
    for _ in range(count):
        job = q.enqueue("hub.queues.backlogs", None)
        job.enqueued_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)
        job.save()
    assert next(x for x in backlogs(redis)["queues"] if x["name"] == queue_name)["waiting"] == count


def test_the_panel_shows_a_real_backlog_and_links_to_the_lists(app, client, admin_kit, tenant_factory, sandbox):
    from hub.providers import health

    tenant = tenant_factory()
    seed_transactions(app, tenant.id, 4, status=lambda n: "review" if n < 3 else "succeeded")
    _enqueue_waiting(app, "webhooks", 7, age_s=3 * 60 + 5)
    redis = app.extensions["rop"].redis
    for _ in range(health.MIN_CALLS):
        health.record(redis, sandbox, "unknown", 10, transport_failure=True)  # opens the shared breaker
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get("/admin/").get_data(as_text=True)
    row = re.search(r'<tr id="queue-webhooks"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert row and 'class="table-warning stalled"' in row.group(0)
    assert '<td class="num waiting">7</td>' in row.group(1)
    assert re.search(r'<td class="oldest">3 min 0[5-9] s</td>', row.group(1))
    assert "no worker serves it" in row.group(1)
    assert 'href="/admin/deliveries/?status=pending">webhooks</a>' in row.group(1)
    assert 'id="workers-alive">0<' in page
    assert 'id="in-review">3<' in page and 'href="/admin/transactions/?status=review"' in page
    assert 'id="breakers-open">1<' in page and sandbox in page
    assert 'id="ops-dead-letters" href="/admin/dead-letters/"' in page
    empty = re.search(r'<tr id="queue-commands"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert '<td class="num waiting">0</td>' in empty.group(1) and "stalled" not in empty.group(0)


def test_a_live_worker_is_counted_and_its_queues_are_served(app, client, admin_kit):
    from rq import Worker

    from hub.queues import GENERAL_QUEUES

    redis = app.extensions["rop"].redis
    worker = Worker(list(GENERAL_QUEUES), connection=redis, name=f"panel-test-{time.time_ns()}")
    worker.register_birth()
    worker.heartbeat()
    try:
        admin_kit.login(client, admin_kit.make_admin(app))
        page = client.get("/admin/").get_data(as_text=True)
        assert 'id="workers-alive">1<' in page
        commands = re.search(r'<tr id="queue-commands"[^>]*>(.*?)</tr>', page, re.DOTALL).group(1)
        provider = re.search(r'<tr id="queue-provider"[^>]*>(.*?)</tr>', page, re.DOTALL).group(1)
        assert "<td>yes" in commands and "no worker serves it" in provider
    finally:
        worker.register_death()


def _running_job(app, tenant_id: str) -> str:
    from sqlalchemy import insert

    from hub.bulk.models import BulkJob
    from hub.db import unit_of_work

    with unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.execute(insert(BulkJob), [{
            "id": "blk_stalled", "tenant_id": tenant_id, "idem_key": "k", "file_sha256": "0" * 64,
            "file_format": "csv", "on_invalid": "skip", "on_insufficient_funds": "partial", "status": "running",
            "total": 5, "validated": 5, "valid": 5, "currency": "IDR"}])
        uow.commit()
    return f"/admin/bulk/{tenant_id}/blk_stalled"


def test_a_stalled_bulk_job_says_why(app, client, admin_kit, tenant_factory):
    from rq import Worker

    from hub.queues import GENERAL_QUEUES, with_lanes

    path = _running_job(app, tenant_factory().id)
    _enqueue_waiting(app, "bulk", 3, age_s=600)
    _enqueue_waiting(app, "provider_bulk", 2, age_s=600)
    _enqueue_waiting(app, "provider", 1, age_s=0)
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get(path).get_data(as_text=True)
    assert 'id="stalled"' in page
    for name in ("bulk", "commands", "events", "provider", "provider_bulk"):
        assert f"no live worker serves the {name} queue" in page
    redis = app.extensions["rop"].redis
    workers = [Worker(list(GENERAL_QUEUES), connection=redis, name=f"general-{time.time_ns()}"),
               Worker(with_lanes(["provider"]), connection=redis, name=f"provider-{time.time_ns()}")]
    for worker in workers:
        worker.register_birth()
        worker.heartbeat()
    try:
        page = client.get(path).get_data(as_text=True)
        assert "no live worker" not in page
        assert "its chunks wait behind 3 job(s) in the bulk queue (the oldest for 10 min" in page
        assert ("its purchases wait behind 2 job(s) in the bulk lane of the provider queue (the oldest for 10 min"
                in page and "API purchases go first (1 job(s) waiting)" in page)
    finally:
        for worker in workers:
            worker.register_death()
