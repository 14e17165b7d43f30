"""Cancel half-way, the same file again, a worker killed mid-chunk: no row is sent twice, none is lost."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from hub.bulk import service
from hub.bulk.models import BulkItem
from hub.bus.outbox import sweep
from hub.db import unit_of_work
from hub.plugins.markers import hookimpl
from hub.transactions.models import Transaction
from hub.worker import make_worker

from .conftest import FUNDS, csv_body, job_view, run_until_settled


def _rows(count: int, prefix: str = "row"):
    return [(f"{prefix}-{n}", "TEL10", f"0812000{n:05d}") for n in range(1, count + 1)]


def _transactions_by_row(app, tenant_id, job_id):
    """row → number of transactions made for it (by their source)."""
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        sources = uow.session.execute(select(Transaction.source, func.count()).where(
            Transaction.tenant_id == tenant_id, Transaction.source.like(f"bulk:{job_id}:%"))
            .group_by(Transaction.source)).all()
    return {int(source.rsplit(":", 1)[1]): n for source, n in sources}


def _statuses(app, job_id):
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return dict(uow.session.execute(select(BulkItem.row, BulkItem.status).where(BulkItem.job_id == job_id)).all())


def _available(app, tenant_id, wallet_id):
    from .test_end_to_end import _wallet

    return _wallet(app, tenant_id, wallet_id)


def _price(app, tenant_id, job_id):
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.scalar(select(BulkItem.price).where(BulkItem.job_id == job_id).limit(1))


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(service, "CHUNK_ROWS", 5)
    monkeypatch.setattr(service, "GROUP_ROWS", 2)


def test_cancel_half_way_stops_the_rows_not_sent_and_lets_the_others_finish(app, client, live, funded, fast,
                                                                             submit, small_chunks):
    tenant = funded.tenant
    job_id = submit(tenant, csv_body(_rows(30))).get_json()["id"]
    make_worker(app, ["commands"]).work(burst=True, max_jobs=1)  # validation: 6 chunks queued
    assert job_view(app, tenant.id, job_id)["status"] == "queued"
    make_worker(app, ["bulk"]).work(burst=True, max_jobs=2)  # two chunks sent, nothing settled yet
    sent = job_view(app, tenant.id, job_id)
    assert (sent["status"], sent["submitted"], sent["succeeded"]) == ("running", 10, 0)

    response = client.post(f"/v1/bulk/{job_id}/cancel", headers=tenant.headers)
    assert response.status_code == 200, response.get_json()
    cancelled = response.get_json()
    assert (cancelled["status"], cancelled["cancelled"], cancelled["pending"]) == ("cancelled", 20, 10)
    assert client.post(f"/v1/bulk/{job_id}/cancel", headers=tenant.headers).get_json()["cancelled"] == 20

    view = run_until_settled(app, tenant.id, job_id, lambda v: v["succeeded"] == 10)
    assert {k: view[k] for k in ("status", "valid", "submitted", "succeeded", "cancelled", "pending")} == {
        "status": "cancelled", "valid": 30, "submitted": 10, "succeeded": 10, "cancelled": 20, "pending": 0}
    assert view["completed_at"] is not None
    assert _transactions_by_row(app, tenant.id, job_id) == {row: 1 for row in range(1, 11)}
    statuses = _statuses(app, job_id)
    assert [statuses[r] for r in range(1, 31)] == ["succeeded"] * 10 + ["cancelled"] * 20
    money = _available(app, tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - 10 * _price(app, tenant.id, job_id), 0)
    assert client.post(f"/v1/bulk/{job_id}/cancel", headers=tenant.headers).status_code == 200
    completed = submit(tenant, csv_body(_rows(2, "other"))).get_json()["id"]
    run_until_settled(app, tenant.id, completed, lambda v: v["status"] == "completed")
    assert client.post(f"/v1/bulk/{completed}/cancel", headers=tenant.headers).status_code == 409


def test_the_same_file_again_sends_nothing_again(app, client, live, funded, fast, submit):
    tenant = funded.tenant
    body = csv_body(_rows(6))
    job_id = submit(tenant, body).get_json()["id"]
    again = submit(tenant, body)  # while it is still validating
    assert (again.status_code, again.get_json()["id"]) == (200, job_id)
    first = run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "completed")
    assert first["succeeded"] == 6
    later = submit(tenant, body)
    assert (later.status_code, later.get_json()["id"], later.get_json()["succeeded"]) == (200, job_id, 6)
    # the same rows under another reference: every ref_id is used, so the file is rejected
    response = submit(tenant, body, reference="second-try")
    assert response.status_code == 202, response.get_json()
    other = response.get_json()["id"]
    rejected = run_until_settled(app, tenant.id, other, lambda v: v["status"] == "rejected")
    assert (rejected["invalid"], rejected["valid"]) == (6, 0)
    items = client.get(f"/v1/bulk/{other}/items?status=invalid", headers=tenant.headers).get_json()["items"]
    assert all("already used" in i["error"] for i in items)
    assert _transactions_by_row(app, tenant.id, job_id) == {row: 1 for row in range(1, 7)}
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.scalar(select(func.count()).select_from(Transaction)
                                  .where(Transaction.tenant_id == tenant.id)) == 6


_KILLED_WORKER = """
import time
from hub.app import create_app
from hub.bulk import service
from hub.plugins import hookimpl
from hub.worker import make_worker

service.GROUP_ROWS = 4

class Stall:
    '''The tenth hold of the run stalls (the worker is killed there, mid-chunk).'''

    def __init__(self, redis):
        self.redis = redis

    @hookimpl
    def before_wallet_debit(self, ctx, wallet_id, amount):
        if self.redis.incr("bulk_test:holds") == 10:
            self.redis.set("bulk_test:stalled", "1")
            time.sleep(120)
        return None

app = create_app()
state = app.extensions["rop"]
state.extras["plugins"].pm.register(Stall(state.redis))
make_worker(app, ["bulk"]).work()
"""


def test_a_worker_killed_mid_chunk_loses_no_row_and_sends_none_twice(app, config, live, funded, fast, submit,
                                                                     monkeypatch):
    from hub.bulk.messages import ProcessBulkChunk

    monkeypatch.setattr(ProcessBulkChunk, "retry_base", 0.0)  # the retry is due at once (no scheduler here)
    tenant = funded.tenant
    job_id = submit(tenant, csv_body(_rows(20))).get_json()["id"]
    make_worker(app, ["commands"]).work(burst=True, max_jobs=1)  # validation: one chunk of 20 rows queued
    assert job_view(app, tenant.id, job_id)["status"] == "queued"
    redis = app.extensions["rop"].redis
    env = dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=app.extensions["rop"].redis_url,
               ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="WARNING")
    worker = subprocess.Popen([sys.executable, "-c", _KILLED_WORKER], env=env)
    try:
        deadline = time.monotonic() + 60
        while redis.get("bulk_test:stalled") is None:
            assert time.monotonic() < deadline, "the worker never reached the tenth row"
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    # two groups of four committed; the third died with its transaction
    assert _transactions_by_row(app, tenant.id, job_id) == {row: 1 for row in range(1, 9)}
    assert job_view(app, tenant.id, job_id)["submitted"] == 8

    sweep(app, abandoned_before=time.time() + 3600)  # the dead worker's chunk goes back to its queue
    view = run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "completed")
    assert (view["submitted"], view["succeeded"], view["failed"], view["pending"]) == (20, 20, 0, 0)
    assert _transactions_by_row(app, tenant.id, job_id) == {row: 1 for row in range(1, 21)}
    assert set(_statuses(app, job_id).values()) == {"succeeded"}
    money = _available(app, tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - 20 * _price(app, tenant.id, job_id), 0)


class TwinFirst:
    """At the first purchase hold of a group, another client buys with a ref_id of the file
    (committed at once): the group's batched insert then meets it."""

    def __init__(self, app, tenant_id: str, ref_id: str, customer_no: str):
        self.app, self.tenant_id, self.ref_id, self.customer_no = app, tenant_id, ref_id, customer_no
        self.twin_id: str | None = None

    @hookimpl
    def before_wallet_debit(self, ctx, wallet_id, amount, currency, reason):
        if self.twin_id is not None or not reason.startswith("hold:transaction:"):
            return None
        from hub.context import CallContext
        from hub.transactions import client as transactions

        self.twin_id = "pending"
        twin_ctx = CallContext(tenant_id=self.tenant_id, client_id="other-client",
                               scopes=frozenset({"transactions:write", "wallets:write"}), actor="other-client")
        with unit_of_work(self.app.extensions["rop"].db) as uow:
            accepted = transactions.submit(twin_ctx, uow, ref_id=self.ref_id, product_code="TEL10",
                                           customer_no=self.customer_no)
            uow.commit()
        self.twin_id = accepted.transaction["id"]
        return None


@pytest.mark.postgres("SQLite serializes writers with BEGIN IMMEDIATE: no window for a twin")
def test_a_ref_id_taken_while_its_group_is_written_fails_that_row_alone_postgres(app, client, live, funded, fast,
                                                                                 submit, is_postgres, monkeypatch):
    """The group's purchases are written together at its commit (no savepoint each): a twin
    committed meanwhile fails that insert, and the group is submitted again, its look-up now
    finding the twin — the twin's row is refused (409), the others are sent once, the wallet
    pays for each once."""
    from hub.bulk.messages import ProcessBulkChunk

    monkeypatch.setattr(ProcessBulkChunk, "max_retries", 0)  # the chunk's own run copes, not a retry
    tenant = funded.tenant
    rows = _rows(6, prefix="twin")
    twin = TwinFirst(app, tenant.id, rows[-1][0], rows[-1][2])
    host = app.extensions["rop"].extras["plugins"]
    host.pm.register(twin)
    try:
        job_id = submit(tenant, csv_body(rows)).get_json()["id"]
        view = run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "completed", timeout=20)
    finally:
        host.pm.unregister(twin)
    assert twin.twin_id and twin.twin_id.startswith("trx_")
    assert (view["succeeded"], view["failed"], view["submitted"]) == (5, 1, 5)
    failed = client.get(f"/v1/bulk/{job_id}/items?status=failed", headers=tenant.headers).get_json()["items"]
    assert [i["row"] for i in failed] == [6] and "already used" in failed[0]["error"]
    assert _transactions_by_row(app, tenant.id, job_id) == {row: 1 for row in range(1, 6)}
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        twins = uow.session.execute(select(Transaction.id, Transaction.source).where(
            Transaction.tenant_id == tenant.id, Transaction.ref_id == rows[-1][0])).all()
    assert [tuple(t) for t in twins] == [(twin.twin_id, None)]
    price = _price(app, tenant.id, job_id)
    money = _available(app, tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - 6 * price, 0)


@pytest.mark.postgres("SQLite serializes writers: a cancel cannot commit inside the validation's unit of work")
def test_a_cancel_committed_while_a_batch_is_validated_is_not_undone(app, client, funded, monkeypatch, is_postgres):
    """The validation reads a batch of received rows, a cancel commits (the rows cancelled, the
    job recounted), then the validation writes its verdicts: only over rows still received, so
    the cancelled rows stay cancelled and the job's counters match its rows."""
    from hub.bulk.models import BulkJob
    from hub.context import CallContext

    tenant = funded.tenant
    response = client.post("/v1/bulk", data=csv_body(_rows(5)), headers=tenant.headers, content_type="text/csv")
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.get_json()["id"]
    validate, cancelled = service._validate_batch, []

    def cancel_first(svc, uow, items, products, currency):
        if not cancelled:
            cancelled.append(client.post(f"/v1/bulk/{job_id}/cancel", headers=tenant.headers))
        return validate(svc, uow, items, products, currency)

    monkeypatch.setattr(service, "_validate_batch", cancel_first)
    with app.app_context():
        service.validate_job(CallContext.system(tenant_id=tenant.id), app.extensions["rop"].db, job_id)
    assert cancelled[0].status_code == 200, cancelled[0].get_data(as_text=True)
    assert set(_statuses(app, job_id).values()) == {"cancelled"}
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        job = uow.session.get(BulkJob, job_id)
        # as the cancel counted them (rows not found invalid yet count as valid, and cancelled)
        assert (job.status, job.cancelled, job.valid, job.validated) == ("cancelled", 5, 5, 0)
    assert _transactions_by_row(app, tenant.id, job_id) == {}
