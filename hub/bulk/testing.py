"""Helpers for tests of the bulk service and of the services around it."""
from __future__ import annotations

import io

from hub.context import CallContext
from hub.db import unit_of_work


def make_job(app, tenant_id: str, rows: list[tuple[str, str, str]] | None = None, **options) -> str:
    """Submit a small CSV job for ``tenant_id`` (nothing runs it); return its id."""
    from hub.bulk import service
    from hub.bulk.parsers import parser_table

    rows = rows or [("route-walk-1", "TEL10", "081234567890")]
    body = "ref_id,product_code,customer_no\n" + "".join(f"{r},{p},{c}\n" for r, p, c in rows)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        job, _ = service.submit_stream(CallContext.system(actor="tests", tenant_id=tenant_id), uow,
                                       io.BytesIO(body.encode()), parsers=parser_table(), file_name="rows.csv",
                                       options=options)
        uow.commit()
        return job.id
