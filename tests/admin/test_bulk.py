"""Bulk jobs in the admin UI: list, counts, the progress endpoint the bar polls, results, cancel."""
from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from hub.app import SERVICE_PACKAGES
from hub.db import unit_of_work

if "hub.bulk" not in SERVICE_PACKAGES:
    pytest.skip("the bulk service is not in this tree yet", allow_module_level=True)

from tests.bulk.conftest import csv_body, job_view, run_until_settled

ROWS = [("a-1", "TEL10", "081200001234"), ("a-2", "TEL10", "081200009999"), ("a-3", "TEL10", "081200001234")]


def _submit(client, tenant, rows=ROWS):
    response = client.post("/v1/bulk", data=csv_body(rows), headers=tenant.headers, content_type="text/csv")
    assert response.status_code in (200, 201, 202), response.get_json()
    return response.get_json()["id"]


def test_a_finished_job_shows_counts_full_progress_and_its_results(app, client, admin_kit, funded, fast):
    tenant = funded.tenant
    job_id = _submit(client, tenant)
    run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "completed")
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    listing = client.get(f"/admin/bulk/?tenant={tenant.id}").get_data(as_text=True)
    assert job_id in listing and "100%" in listing
    page = client.get(f"/admin/bulk/{tenant.id}/{job_id}").get_data(as_text=True)
    assert 'id="count-succeeded">2<' in page and 'id="count-failed">1<' in page
    assert 'aria-valuenow="100"' in page and "bulk-progress.js" in page and "cancel-job" not in page
    progress = client.get(f"/admin/bulk/{tenant.id}/{job_id}/progress.json")
    assert progress.headers["Cache-Control"] == "no-store"
    body = progress.get_json()
    assert body["percent"] == 100 and body["done"] and body["counts"]["succeeded"] == 2
    results = client.get(f"/admin/bulk/{tenant.id}/{job_id}/results.csv")
    assert results.mimetype == "text/csv" and "attachment" in results.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(results.get_data(as_text=True))))
    assert [(r["ref_id"], r["status"]) for r in rows] == [("a-1", "succeeded"), ("a-2", "failed"),
                                                          ("a-3", "succeeded")]
    assert client.get("/admin/assets/bulk-progress.js").status_code == 200


def test_an_operator_cancels_a_job_before_it_runs_and_it_is_audited(app, client, admin_kit, funded, fast):
    from hub.tenancy.models import AuditEntry

    tenant = funded.tenant
    job_id = _submit(client, tenant)  # no worker ran: still validating
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    path = f"/admin/bulk/{tenant.id}/{job_id}"
    assert "cancel-job" in client.get(path).get_data(as_text=True)
    progress = client.get(path + "/progress.json").get_json()
    assert progress["done"] is False and progress["percent"] == 0
    token = admin_kit.csrf_from(client, path)
    assert client.post(path + "/cancel", data={"csrf_token": token}).status_code == 302
    assert job_view(app, tenant.id, job_id)["status"] == "cancelled"
    assert client.get(path + "/progress.json").get_json()["done"] is True
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        entries = list(uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "bulk_job.cancelled")))
        assert [(e.actor, e.tenant_id, e.target_id) for e in entries] == [("admin:op@example.com", tenant.id, job_id)]


def test_another_tenants_job_is_not_found(app, client, admin_kit, funded, tenant_factory):
    job_id = _submit(client, funded.tenant)
    other = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    assert client.get(f"/admin/bulk/{other.id}/{job_id}").status_code == 404
    missing = client.get(f"/admin/bulk/{other.id}/{job_id}/progress.json")
    assert missing.status_code == 404 and missing.get_json()["title"] == "Not found"
    assert client.get(f"/admin/bulk/{other.id}/{job_id}/results.csv").status_code == 404
