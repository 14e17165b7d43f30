"""POST /v1/bulk: a file in, a job and its rows out; the same submission twice is one job."""
from __future__ import annotations

import io
import json

from sqlalchemy import func, select

from hub.bulk.models import BulkItem
from hub.bus.models import OutboxMessage
from hub.db import unit_of_work
from tests.bulk.conftest import csv_body

ROWS = [("r1", "TEL10", "081234567890"), ("r2", "PLN20", "12345678901"), ("r3", "TEL10", "081234567891")]


def _items(app, job_id):
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(i.row, i.ref_id, i.product_code, i.customer_no, i.status, i.error) for i in uow.session.scalars(
            select(BulkItem).where(BulkItem.job_id == job_id).order_by(BulkItem.row))]


def test_a_csv_body_becomes_a_validating_job_with_one_item_per_row(app, tenant_factory, submit):
    tenant = tenant_factory()
    response = submit(tenant, csv_body(ROWS) + b"r4,TEL10\n")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["status"] == "validating" and job["total"] == 4 and job["validated"] == 0 and job["format"] == "csv"
    assert job["on_invalid"] == "reject" and job["on_insufficient_funds"] == "reject"
    items = _items(app, job["id"])
    assert [i[:5] for i in items[:3]] == [(n + 1, *row, "received") for n, row in enumerate(ROWS)]
    assert items[3][4:] == ("invalid", "2 fields where the header has 3")
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        commands = uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.type == "bulk.validate_job"))
    assert commands == 1


def test_multipart_upload_with_options_in_form_fields(client, tenant_factory):
    tenant = tenant_factory()
    response = client.post("/v1/bulk", headers=tenant.headers, content_type="multipart/form-data", data={
        "file": (io.BytesIO(csv_body(ROWS)), "march.csv"), "on_invalid": "skip", "reference": "march"})
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert (job["file_name"], job["reference"], job["on_invalid"], job["total"]) == ("march.csv", "march", "skip", 3)


def test_json_items_with_options_in_the_body(client, tenant_factory):
    tenant = tenant_factory()
    body = {"items": [dict(zip(("ref_id", "product_code", "customer_no"), r)) for r in ROWS],
            "on_insufficient_funds": "partial", "reference": "json-1"}
    response = client.post("/v1/bulk", headers=tenant.headers, json=body)
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert (job["format"], job["total"], job["on_insufficient_funds"], job["reference"]) == \
        ("json", 3, "partial", "json-1")


def test_the_same_file_again_is_the_same_job_and_another_tenant_gets_its_own(tenant_factory, submit):
    tenant, other = tenant_factory(), tenant_factory()
    first = submit(tenant, csv_body(ROWS))
    again = submit(tenant, csv_body(ROWS))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert submit(other, csv_body(ROWS)).get_json()["id"] != first.get_json()["id"]


def test_a_reference_reused_with_another_file_or_policy_is_a_conflict(tenant_factory, submit):
    tenant = tenant_factory()
    first = submit(tenant, csv_body(ROWS), reference="batch-1")
    assert submit(tenant, csv_body(ROWS), reference="batch-1").get_json()["id"] == first.get_json()["id"]
    other_file = submit(tenant, csv_body(ROWS[:2]), reference="batch-1")
    assert other_file.status_code == 409 and "another file" in other_file.get_json()["detail"]
    other_policy = submit(tenant, csv_body(ROWS), reference="batch-1", on_invalid="skip")
    assert other_policy.status_code == 409 and other_policy.get_json()["job_id"] == first.get_json()["id"]


def test_files_that_cannot_be_read_are_422_and_create_nothing(app, client, tenant_factory, submit):
    tenant = tenant_factory()
    cases = [
        submit(tenant, b"ref_id,customer_no\nr1,0812\n"),
        submit(tenant, b"ref_id,product_code,customer_no\n"),
        submit(tenant, b"\x00\x01", content_type="application/octet-stream"),
        submit(tenant, b'{"items": [', content_type="application/json"),
        submit(tenant, csv_body(ROWS), on_invalid="maybe"),
        client.post("/v1/bulk", headers=tenant.headers, content_type="multipart/form-data",
                    data={"other": (io.BytesIO(b"x"), "x.csv")}),
    ]
    assert [r.status_code for r in cases] == [422] * len(cases), [r.get_json() for r in cases]
    assert all(r.mimetype == "application/problem+json" for r in cases)
    assert client.get("/v1/bulk", headers=tenant.headers).get_json()["items"] == []


def test_scopes_guard_submit_and_read(client, tenant_factory, submit):
    reader = tenant_factory(scopes=["bulk:read"])
    assert submit(reader, csv_body(ROWS)).status_code == 403
    writer = tenant_factory(scopes=["bulk:write"])
    job = submit(writer, csv_body(ROWS)).get_json()
    assert client.get(f"/v1/bulk/{job['id']}", headers=writer.headers).status_code == 403
    assert client.post("/v1/bulk", data=csv_body(ROWS), content_type="text/csv").status_code == 401


def test_listing_jobs_newest_first_with_a_cursor(client, tenant_factory, submit):
    tenant = tenant_factory()
    ids = [submit(tenant, csv_body([(f"r{n}", "TEL10", "081234567890")])).get_json()["id"] for n in range(3)]
    page = client.get("/v1/bulk?limit=2", headers=tenant.headers).get_json()
    rest = client.get(f"/v1/bulk?limit=2&cursor={page['next_cursor']}", headers=tenant.headers).get_json()
    assert [j["id"] for j in page["items"] + rest["items"]] == list(reversed(ids))
    assert rest["next_cursor"] is None
    assert json.loads(client.get("/v1/bulk?status=completed", headers=tenant.headers).data)["items"] == []
