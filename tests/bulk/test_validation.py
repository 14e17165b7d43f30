"""Validation of a file's rows: duplicates of a ref_id in the file, across validation batches."""
from __future__ import annotations

from hub.bulk import service as bulk_service
from hub.context import CallContext
from hub.db import unit_of_work

from .conftest import csv_body, job_view


def _items(app, tenant_id, job_id) -> dict[int, tuple[str, str | None]]:
    from hub.bulk import client as bulk

    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        items, _ = bulk.items(CallContext.system(tenant_id=tenant_id), uow, job_id, limit=100)
    return {i["row"]: (i["status"], i["error"]) for i in items}


def test_duplicates_are_found_across_batches_and_after_a_re_run(app, sandbox, funded, submit, monkeypatch):
    monkeypatch.setattr(bulk_service, "BATCH_ROWS", 3)  # the file spans four validation batches
    rows = [("a", "TEL10", "081200010001"), ("b", "TEL10", "081200010002"),
            ("c", "TEL10", ""),  # invalid at intake: its ref_id still counts as taken
            ("d", "TEL10", "081200010004"), ("a", "TEL10", "081200010005"),
            ("c", "TEL10", "081200010006"), ("e", "TEL10", "081200010007"),
            ("a", "TEL10", "081200010008"), ("f", "NOPE", "081200010009"),
            ("d", "NOPE", "081200010010")]
    job_id = submit(funded.tenant, csv_body(rows), on_invalid="skip").get_json()["id"]
    db = app.extensions["rop"].db
    ctx = CallContext.system(actor="tests", tenant_id=funded.tenant.id)
    # a first run that stopped after marking the duplicates (a worker killed there) ...
    with app.app_context(), unit_of_work(db) as uow:
        assert bulk_service._mark_duplicates(uow, job_id) == 4
        uow.commit()
    # ... and the run that does it all again
    with app.app_context():
        bulk_service.validate_job(ctx, db, job_id)

    items = _items(app, funded.tenant.id, job_id)
    assert items[5] == ("invalid", "duplicate ref_id: row 1 has the same one")
    assert items[8] == ("invalid", "duplicate ref_id: row 1 has the same one")
    assert items[6] == ("invalid", "duplicate ref_id: row 3 has the same one")
    assert items[10] == ("invalid", "duplicate ref_id: row 4 has the same one")  # not "unknown product"
    assert items[3][0] == "invalid" and "customer_no is missing" in items[3][1]
    assert "unknown product" in items[9][1]
    assert {row for row, (status, _) in items.items() if status == "valid"} == {1, 2, 4, 7}
    view = job_view(app, funded.tenant.id, job_id)
    assert (view["status"], view["total"], view["validated"], view["valid"], view["invalid"]) == \
        ("queued", 10, 10, 4, 6)


def test_the_validated_count_includes_the_duplicates_as_it_goes(app, sandbox, funded, submit, monkeypatch):
    from hub.bulk.models import BulkJob

    monkeypatch.setattr(bulk_service, "BATCH_ROWS", 2)
    seen = []
    real = bulk_service._validate_batch

    def spy(svc, uow, items, *args):
        seen.append(uow.session.get(BulkJob, job_id).validated)
        return real(svc, uow, items, *args)

    monkeypatch.setattr(bulk_service, "_validate_batch", spy)
    rows = [("x", "TEL10", "081200020001"), ("x", "TEL10", "081200020002"), ("x", "TEL10", "081200020003"),
            ("y", "TEL10", "081200020004"), ("z", "TEL10", "081200020005")]
    job_id = submit(funded.tenant, csv_body(rows), on_invalid="skip").get_json()["id"]
    with app.app_context():
        bulk_service.validate_job(CallContext.system(actor="tests", tenant_id=funded.tenant.id),
                                  app.extensions["rop"].db, job_id)
    # two duplicates first, then batches of the three other rows: 2, then 2 + 2
    assert seen == [2, 4]
    assert job_view(app, funded.tenant.id, job_id)["validated"] == 5
