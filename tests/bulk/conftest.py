from __future__ import annotations

import pytest

from hub.db import unit_of_work


def csv_body(rows) -> bytes:
    """A bulk CSV from ``[(ref_id, product_code, customer_no), ...]``."""
    return ("ref_id,product_code,customer_no\n" + "".join(f"{r},{p},{c}\n" for r, p, c in rows)).encode()


@pytest.fixture
def submit(client):
    """``submit(tenant, body_bytes, content_type="text/csv", **query)`` → the response."""
    def post(tenant, body: bytes, content_type: str = "text/csv", **query):
        return client.post("/v1/bulk", query_string=query, data=body, headers=tenant.headers,
                           content_type=content_type)
    return post


@pytest.fixture
def job_row(app):
    """``job_row(job_id)``: the job's row (fresh)."""
    def get(job_id):
        from hub.bulk.models import BulkJob

        with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
            return uow.session.get(BulkJob, job_id)
    return get


# The transactions service's fixtures: the sandbox catalog, a funded tenant, live HTTP for callbacks.
from tests.transactions.conftest import FUNDS, drain, fast, funded, live, sandbox  # noqa: F401


def job_view(app, tenant_id: str, job_id: str) -> dict:
    from hub.bulk import client as bulk
    from hub.context import CallContext

    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return bulk.get(CallContext.system(tenant_id=tenant_id), uow, job_id)


def run_until_settled(app, tenant_id: str, job_id: str, done, timeout: float = 60.0) -> dict:
    """Run burst workers (and the transactions' status-check sweep) until ``done(view)``."""
    import datetime as dt

    from hub.db import utcnow
    from hub.transactions import sweep

    def settled():
        with app.app_context():
            sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))
        return done(job_view(app, tenant_id, job_id))

    try:
        drain(app, settled, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"the job did not get there: {job_view(app, tenant_id, job_id)}") from None
    drain(app)
    return job_view(app, tenant_id, job_id)
