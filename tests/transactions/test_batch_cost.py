"""What completing purchases costs, counted (PostgreSQL): 100 purchases accepted while no
worker runs, then relayed and driven to final by the workers, in RQ jobs and in SQL
statements from the relay's first pass to the last purchase final (a function call or an
executemany is one statement). A batch's purchases share every round trip: one more
statement per purchase, anywhere on the path, fails this test."""
from __future__ import annotations

import collections

import pytest
from sqlalchemy import select

from hub.bus.relay import OutboxRelay
from hub.db import unit_of_work
from hub.transactions.models import Transaction
from hub.worker import HubWorker
from tests.transactions.conftest import buy, drain
from tests.transactions.test_reference_cache import Statements
from tests.transactions.test_relay_process import _heartbeat

PURCHASES = 100
#: the issue's bound is 5 jobs and 400 statements for 100 purchases; the statements' bound
#: here is tighter, fewer than one per purchase, so that a per-purchase round trip fails it
MAX_JOBS, MAX_STATEMENTS = 5, PURCHASES - 1


def _statuses(app, tenant_id: str) -> list[str]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return list(uow.session.scalars(select(Transaction.status).where(Transaction.tenant_id == tenant_id)))


@pytest.mark.postgres
def test_a_hundred_purchases_complete_in_a_few_jobs_and_fewer_statements_than_purchases(
        app, client, funded, monkeypatch):
    _heartbeat(app, True)  # a relay process "runs": the requests leave their messages in the outbox
    for n in range(PURCHASES):
        assert buy(client, funded.tenant, f"0812{n:08d}").status_code == 202
    jobs: collections.Counter = collections.Counter()
    perform = HubWorker.perform_job

    def counted(worker, job, queue, *args, **kwargs):
        jobs[(queue.name, job.func_name)] += 1
        return perform(worker, job, queue, *args, **kwargs)

    monkeypatch.setattr(HubWorker, "perform_job", counted)
    with Statements(app.extensions["rop"].db.engine) as seen:
        relay = OutboxRelay(app)
        with app.app_context():
            while relay.relay_once():
                pass
        _heartbeat(app, False)
        drain(app, until=lambda: set(_statuses(app, funded.tenant.id)) == {"succeeded"}, timeout=60)
    kinds = collections.Counter(" ".join(s.split()[:3]) for s in seen.sent)
    print(f"\n{PURCHASES} purchases to final: {sum(jobs.values())} jobs {dict(jobs)}, "
          f"{len(seen.sent)} statements {dict(kinds.most_common())}")
    assert sum(jobs.values()) <= MAX_JOBS, dict(jobs)
    assert len(seen.sent) <= MAX_STATEMENTS, kinds.most_common()
    assert len(_statuses(app, funded.tenant.id)) == PURCHASES
