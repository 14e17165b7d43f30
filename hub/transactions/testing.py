"""Helpers for tests (the route-security walk, other services' tests): a funded tenant's
accepted transaction on the sandbox catalog."""
from __future__ import annotations

import uuid

from hub.context import CallContext
from hub.db import unit_of_work


def make_transaction(app, tenant_id: str, *, product_code: str = "TEL10", customer_no: str = "081200001234",
                     funds: int = 1_000_000) -> str:
    """Seed the sandbox catalog, top up the tenant's main wallet with ``funds`` and accept one
    purchase; returns its id (still ``pending``: no worker ran)."""
    from hub.products.testing import seed_sandbox_catalog
    from hub.transactions import service
    from hub.wallets import accounts as wallets

    seed_sandbox_catalog(app)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=tenant_id)
        wallets.topup(ctx, uow, None, funds, f"seed-{uuid.uuid4().hex[:8]}")
        accepted = service.submit(ctx.with_changes(client_id="tests"), uow, ref_id=uuid.uuid4().hex,
                                  product_code=product_code, customer_no=customer_no)
        uow.commit()
        return accepted.transaction.id
