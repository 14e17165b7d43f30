"""The dashboard's figures, each from the owning service's use-cases."""
from __future__ import annotations

from typing import Any

from rop_admin.security import admin_ctx

from hub.state import current_state
from hub.web import request_uow


def dashboard_data() -> dict[str, Any]:
    """Everything the dashboard template draws."""
    from hub.bus.deadletters import list_dead_letters
    from hub.tenancy.service import list_tenants

    totals = wallet_totals()
    uow = request_uow()
    tenants = list_tenants(uow)
    active = sum(1 for t in tenants if t.status == "active")
    bars = [("active", active), ("disabled", len(tenants) - active)]
    return {
        "tenants": len(tenants),
        "bars": bars,
        "peak": max([v for _, v in bars] + [1]),
        "dead_letters": len(list_dead_letters(uow, limit=1000)),
        "wallet_totals": totals,
    }


def wallet_totals(max_tenants: int = 500) -> dict[str, dict[str, int]]:
    """Available and held per currency over every tenant's wallets (through the wallets service).

    Runs in its own unit of work, before the request's read-only session: listing a tenant's
    wallets creates its main wallet on first access (the wallets service's lazy creation).
    """
    from hub.db import unit_of_work
    from hub.tenancy.service import list_tenants
    from hub.wallets.service import list_wallets

    totals: dict[str, dict[str, int]] = {}
    with unit_of_work(current_state().db) as uow:
        for tenant in list_tenants(uow)[:max_tenants]:
            cursor = None
            while True:
                rows, cursor = list_wallets(admin_ctx(tenant.id), uow, cursor=cursor, limit=200)
                for w in rows:
                    t = totals.setdefault(w.currency, {"available": 0, "held": 0, "wallets": 0})
                    t["available"] += w.available
                    t["held"] += w.held
                    t["wallets"] += 1
                if cursor is None:
                    break
        uow.commit()
    return totals
