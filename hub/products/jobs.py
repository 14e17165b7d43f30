"""Periodic jobs of the products service (run by ``rop scheduler`` on a worker, in app context)."""
from __future__ import annotations

from typing import Any

import structlog
from flask import current_app

from hub.context import CallContext
from hub.db import unit_of_work
from hub.products.sync import sync_all

log = structlog.get_logger("hub.products")


def sync_catalogs_job() -> list[dict[str, Any]]:
    """Sync every enabled configuration whose provider lists a catalog, one at a time; a
    failed one is logged and recorded in ``catalog_syncs`` (nothing of it applied)."""
    db = current_app.extensions["rop"].db
    reports = sync_all(CallContext.system(actor="products:scheduler"), lambda: unit_of_work(db))
    failed = [r for r in reports if r["status"] != "succeeded"]
    if failed:
        log.error("catalog syncs failed", failed=[(r["config_id"], r["error"]) for r in failed])
    return reports
