"""The dashboard's figures, each from the owning service's use-cases, and the geometry of
its charts (server-side SVG: no chart library, no CDN)."""
from __future__ import annotations

import datetime as dt
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
    data = {
        "tenants": len(tenants),
        "bars": bars,
        "peak": max([v for _, v in bars] + [1]),
        "dead_letters": len(list_dead_letters(uow, limit=1000)),
        "wallet_totals": totals,
        "hourly": None,
        "providers": None,
    }
    from hub.app import SERVICE_PACKAGES

    if "hub.transactions" in SERVICE_PACKAGES:
        from hub.db import utcnow
        from hub.transactions import client as transactions

        now = utcnow()
        since = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=HOURS - 1)
        stats = _cached(f"rop:admin:dashboard:stats:{since:%Y%m%d%H}",
                        lambda: transactions.stats(admin_ctx(), uow, since=since))
        data["hourly"] = hourly_chart(stats["per_hour"], since)
        data["providers"] = provider_rows(stats["providers"])
    data["ops"] = operations_health(uow, dead_letters=data["dead_letters"])
    return data


#: A queue whose oldest waiting job is older than this (seconds) is shown as stalled.
STALLED_AFTER = 60
#: A worker whose last heartbeat is older than this (seconds) is not counted alive.
WORKER_ALIVE_WITHIN = 120


def operations_health(uow, *, dead_letters: int) -> dict[str, Any]:
    """The dashboard's operations panel: each queue's backlog and its oldest waiting job's
    age, the workers alive and the queues nobody serves, dead letters, open provider
    breakers, transactions in review. Read live (not cached): it is what an operator looks at
    when something is stuck."""
    from hub.app import SERVICE_PACKAGES
    from hub.providers import client as providers
    from hub.queues import backlogs

    found = backlogs(current_state().redis)
    alive = [w for w in found["workers"]
             if w["heartbeat_age_s"] is not None and w["heartbeat_age_s"] <= WORKER_ALIVE_WITHIN]
    served = {q for w in alive for q in w["queues"]}
    from flask import url_for

    lists = {"webhooks": url_for("admin_deliveries.index", status="pending")}
    if "hub.transactions" in SERVICE_PACKAGES:
        lists["provider"] = url_for("admin_transactions.index", status="pending")
    if "hub.bulk" in SERVICE_PACKAGES:
        lists["bulk"] = url_for("admin_bulk.index", status="running")
    for q in found["queues"]:
        q["list_url"] = lists.get(q["name"])
        q["served"] = q["name"] in served
        q["stalled"] = bool(q["waiting"]) and (not q["served"] or (q["oldest_age_s"] or 0) > STALLED_AFTER)
    configs = providers.list_configs(uow)
    is_open = providers.breakers_open([c["config_id"] for c in configs])
    in_review = None
    if "hub.transactions" in SERVICE_PACKAGES:
        from hub.transactions import client as transactions

        in_review = transactions.operator_page(admin_ctx(), uow, status="review", per_page=1)
    return {"queues": found["queues"], "workers_alive": len(alive), "workers": alive,
            "dead_letters": dead_letters, "breakers_open": [c for c in configs if is_open[c["config_id"]]],
            "configs": len(configs), "in_review": in_review}


HOURS = 24
#: The dashboard's transaction figures are shared by every admin for this long (seconds):
#: a day of transactions is grouped once per interval, not once per page view.
STATS_TTL = 30


def _cached(key: str, compute):
    """``compute()``'s JSON-able result, kept in Redis for ``ROP_ADMIN_STATS_TTL`` seconds
    (app config, default ``STATS_TTL``; 0: not kept)."""
    import json

    from flask import current_app

    ttl = int(current_app.config.get("ROP_ADMIN_STATS_TTL", STATS_TTL))
    if ttl <= 0:
        return compute()
    redis = current_state().redis
    found = redis.get(key)
    if found is not None:
        return json.loads(found)
    value = compute()
    redis.set(key, json.dumps(value), ex=ttl)
    return value
#: Transaction statuses, in the order their bars stack (bottom first).
STATUS_ORDER = ("succeeded", "failed", "refunded", "review", "processing", "pending")
CHART_WIDTH, CHART_HEIGHT, LEFT, BOTTOM = 760, 220, 40, 30


def hourly_chart(per_hour: list[dict[str, Any]], since: dt.datetime) -> dict[str, Any]:
    """A stacked bar per hour (``HOURS`` of them from ``since``): ``bars`` of rects, axis labels,
    the peak and the totals per status."""
    slots = [(since + dt.timedelta(hours=n)).strftime("%Y-%m-%dT%H:00") for n in range(HOURS)]
    counts: dict[str, dict[str, int]] = {slot: {} for slot in slots}
    totals: dict[str, int] = {}
    for row in per_hour:
        if row["hour"] in counts:
            counts[row["hour"]][row["status"]] = counts[row["hour"]].get(row["status"], 0) + row["count"]
            totals[row["status"]] = totals.get(row["status"], 0) + row["count"]
    peak = max([sum(c.values()) for c in counts.values()] + [1])
    step = (CHART_WIDTH - LEFT) / HOURS
    plot = CHART_HEIGHT - BOTTOM
    rects, labels = [], []
    for n, slot in enumerate(slots):
        x = LEFT + n * step
        y = float(plot)
        for status in STATUS_ORDER:
            value = counts[slot].get(status, 0)
            if value:
                height = value / peak * (plot - 10)
                y -= height
                rects.append({"x": round(x + 2, 1), "y": round(y, 1), "width": round(step - 4, 1),
                              "height": round(height, 1), "status": status, "title": f"{slot} {status}: {value}"})
        if n % 3 == 0:
            labels.append({"x": round(x + step / 2, 1), "text": slot[11:16]})
    return {"rects": rects, "labels": labels, "peak": peak, "totals": totals, "statuses": STATUS_ORDER,
            "width": CHART_WIDTH, "height": CHART_HEIGHT, "plot": plot, "left": LEFT,
            "since": slots[0], "until": slots[-1]}


def provider_rows(providers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each provider's figures with the width of its success-rate bar (of 200 px)."""
    return [dict(p, rate_width=round((p["success_rate"] or 0) * 200, 1)) for p in providers]


def wallet_totals() -> dict[str, dict[str, int]]:
    """Available and held per currency over every tenant's wallets (the wallets service's totals)."""
    from hub.wallets.checks import wallet_totals as totals

    return totals(admin_ctx(), request_uow())
