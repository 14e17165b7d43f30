"""Periodic jobs of the wallets service (run by ``rop scheduler`` on a worker, in app context)."""
from __future__ import annotations

import structlog
from flask import current_app

from hub.context import CallContext
from hub.db import unit_of_work
from hub.wallets import service

log = structlog.get_logger("hub.wallets")


def expire_holds_job() -> int:
    """Void every placed hold whose ``expires_at`` has passed."""
    db = current_app.extensions["rop"].db
    voided = service.void_expired_holds(lambda: unit_of_work(db))
    if voided:
        log.info("expired holds voided", count=voided)
    return voided


def verify_job() -> dict:
    """Verify the ledger; on a difference, log it and publish ``wallet.ledger_mismatch``."""
    from hub.bus import publish
    from hub.wallets.messages import LedgerMismatch

    db = current_app.extensions["rop"].db
    with unit_of_work(db, readonly=True) as uow:
        report = service.verify_ledger(uow)
    if not report["ok"]:
        log.error("wallet ledger mismatch", differences=report["differences"][:50])
        with unit_of_work(db) as uow:
            publish(CallContext.system(actor="wallets:verify"), uow,
                    LedgerMismatch(differences=report["differences"][:500]))
            uow.commit()
    return report
