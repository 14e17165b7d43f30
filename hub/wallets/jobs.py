"""Periodic jobs of the wallets service (run by ``rop scheduler`` on a worker, in app context)."""
from __future__ import annotations

import datetime as dt

import structlog
from flask import current_app
from sqlalchemy import select

from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from hub.errors import Conflict
from hub.wallets import checks, holds
from hub.wallets.models import Hold

log = structlog.get_logger("hub.wallets")


def void_expired_holds(uow_factory, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Void every placed hold whose ``expires_at`` has passed; one transaction per hold.

    :param uow_factory: a callable returning a context-managed unit of work.
    :return: how many holds were voided.
    """
    now = now or utcnow()
    with uow_factory() as uow:
        due = uow.session.execute(select(Hold.id, Hold.tenant_id).where(
            Hold.status == "placed", Hold.expires_at.is_not(None), Hold.expires_at <= now)
            .order_by(Hold.expires_at).limit(limit)).all()
    voided = 0
    for hold_id, tenant_id in due:
        ctx = CallContext.system(actor="wallets:expiry", tenant_id=tenant_id)
        with uow_factory() as uow:
            try:
                holds.void_hold(ctx, uow, hold_id, key=f"expire:{hold_id}")
            except Conflict:  # captured or voided meanwhile
                continue
            uow.commit()
            voided += 1
    return voided


def expire_holds_job() -> int:
    """Void every placed hold whose ``expires_at`` has passed."""
    db = current_app.extensions["rop"].db
    voided = void_expired_holds(lambda: unit_of_work(db))
    if voided:
        log.info("expired holds voided", count=voided)
    return voided


def verify_job() -> dict:
    """Verify the ledger; on a difference, log it and publish ``wallet.ledger_mismatch``."""
    from hub.bus import publish
    from hub.wallets.messages import LedgerMismatch

    db = current_app.extensions["rop"].db
    with unit_of_work(db, readonly=True) as uow:
        report = checks.verify_ledger(uow)
    if not report["ok"]:
        log.error("wallet ledger mismatch", differences=report["differences"][:50])
        with unit_of_work(db) as uow:
            publish(CallContext.system(actor="wallets:verify"), uow,
                    LedgerMismatch(differences=report["differences"][:500]))
            uow.commit()
    return report
