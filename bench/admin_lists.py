"""The admin's transaction list and search at 100,000 transactions per tenant: p95 page times.

Fills the transactions table with ``--per-tenant`` rows for each of ``--tenants`` tenants
(one ``INSERT … SELECT generate_series`` per tenant; ANALYZE after), logs an admin user in
through the Flask test client, and times whole admin pages (query, count, template) in this
process: list pages (a tenant's first, 10th and 26th page, a status filter, every tenant,
sorted by price) and searches (a transaction id, a ref id prefix, a customer number, a
provider reference, a search combined with a tenant and a status). Prints each page's p50
and p95 and, last, one JSON line. Goal: p95 <= 300 ms for the list pages and for the searches.

    .venv/bin/python bench/admin_lists.py [--per-tenant 100000] [--tenants 2] [--repeat 20]
                                          [--postgres [ADMIN_URL]]

PostgreSQL only (``--postgres``, the default: a scratch database made and dropped through
ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres). Its own embedded Redis.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from scratch import scratch_database
from sqlalchemy import text

from hub.app import create_app
from hub.config import Config
from hub.context import CallContext
from hub.db import unit_of_work
from hub.embedded_redis import EmbeddedRedis, free_port
from hub.migrate import upgrade

GOAL_P95_MS = 300.0
PASSWORD = "bench admin password 42"
STATUSES = ("succeeded", "succeeded", "succeeded", "succeeded", "failed", "refunded", "review", "processing")

FILL = """
INSERT INTO transactions (id, tenant_id, client_id, ref_id, fingerprint, product_code, product_type, category,
    customer_no, wallet_id, price, currency, status, offers, attempt_count, provider_code, config_id,
    provider_ref, serial_number, check_count, created_at, updated_at, completed_at)
SELECT 'trx_' || :tag || lpad(n::text, 12, '0'), :tenant_id, NULL, 'ord-' || :tag || '-' || lpad(n::text, 8, '0'),
    repeat('0', 64), (ARRAY['TEL10','TEL25','XLD10','PLN20','GOPAY50'])[1 + n % 5], 'prepaid', 'pulsa',
    '0812' || lpad(((n * 7919) % 100000000)::text, 8, '0'), 'wal_bench', 10000 + (n * 37) % 90000, 'IDR',
    (CAST(:statuses AS text[]))[1 + n % 8], '[]', 1, 'sandbox', 'pcf_bench', 'SNB' || :tag || lpad(n::text, 9, '0'),
    'SN' || n, 0, now() - make_interval(secs => (CAST(:count AS int) - n) * 30), now() - make_interval(secs => (CAST(:count AS int) - n) * 30),
    now() - make_interval(secs => (CAST(:count AS int) - n) * 30)
FROM generate_series(1, :count) AS n
"""


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def seed(app, tenants: int, per_tenant: int) -> list[str]:
    from hub.tenancy.service import create_admin_user, create_tenant

    ctx = CallContext.system(actor="bench")
    ids = []
    with unit_of_work(app.extensions["rop"].db) as uow:
        for n in range(tenants):
            ids.append(create_tenant(ctx, uow, f"Bench tenant {n + 1}").id)
        create_admin_user(ctx, uow, "bench@example.com", PASSWORD, "operator")
        uow.commit()
    engine = app.extensions["rop"].db.engine
    with engine.begin() as conn:
        for n, tenant_id in enumerate(ids):
            conn.execute(text(FILL), {"tag": f"t{n}", "tenant_id": tenant_id, "count": per_tenant,
                                      "statuses": list(STATUSES)})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE transactions"))
    return ids


def login(client) -> None:
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/admin/login", data={"email": "bench@example.com", "password": PASSWORD,
                                                  "csrf_token": token})
    assert response.status_code == 302, response.status_code


def pages(tenant_ids: list[str], per_tenant: int) -> dict[str, dict[str, str]]:
    t0 = tenant_ids[0]
    mid = per_tenant // 2
    return {
        "list": {
            "tenant page 1": f"?tenant={t0}",
            "tenant page 10": f"?tenant={t0}&page=10",
            "tenant page 26": f"?tenant={t0}&page=26",
            "tenant, status review": f"?tenant={t0}&status=review",
            "all tenants": "",
            "all tenants, failed": "?status=failed",
            "tenant sorted by price": f"?tenant={t0}&sort=-price",
        },
        "search": {
            "transaction id": f"?q=trx_t0{mid:012d}",
            "ref id prefix": f"?q=ord-t0-000{mid // 100000}{(mid // 10000) % 10}",
            "ref id (exact)": f"?q=ord-t0-{mid:08d}",
            "customer number": f"?q=0812{(mid * 7919) % 100000000:08d}",
            "provider reference": f"?q=SNBt0{mid:09d}",
            "search + tenant + status": f"?q=ord-t0-0001&tenant={t0}&status=succeeded",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-tenant", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", metavar="ADMIN_URL", nargs="?",
                        default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    database_url, drop = scratch_database(args.postgres, "rop_bench_admin")
    tmp = Path(tempfile.mkdtemp(prefix="rop-bench-admin-"))
    redis = EmbeddedRedis(tmp / "redis", persist=False, port=free_port())
    try:
        redis_url = redis.ensure_running()
        upgrade(database_url)
        app = create_app(Config.from_env({}, instance_path=tmp / "instance", database_url=database_url,
                                         redis_url=redis_url, log_format="console", log_level="ERROR"))
        started = time.perf_counter()
        tenant_ids = seed(app, args.tenants, args.per_tenant)
        print(f"bench/admin_lists.py: PostgreSQL, {args.tenants} tenants x {args.per_tenant:,} transactions "
              f"inserted in {time.perf_counter() - started:.1f} s; {args.repeat} timings per page, "
              f"{os.cpu_count()} CPUs", flush=True)
        client = app.test_client()
        login(client)
        figures: dict[str, object] = {"bench": "admin_lists", "database": "postgresql", "tenants": args.tenants,
                                      "per_tenant": args.per_tenant, "repeat": args.repeat,
                                      "goal_p95_ms": GOAL_P95_MS}
        for kind, named in pages(tenant_ids, args.per_tenant).items():
            all_times: list[float] = []
            for name, query in named.items():
                response = client.get(f"/admin/transactions/{query}")  # warm-up, and a check
                body = response.get_data(as_text=True)
                assert response.status_code == 200, (name, response.status_code)
                found = re.search(r'id="page-info"[^>]*>([^<]+)<', body).group(1)
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    client.get(f"/admin/transactions/{query}").get_data()
                    times.append((time.perf_counter() - t) * 1000)
                all_times += times
                print(f"{kind:6} {name:<26} p50 {statistics.median(times):7.1f} ms  p95 {_p(times, 0.95):7.1f} ms"
                      f"  ({found})", flush=True)
            figures[f"{kind}_p50_ms"] = round(statistics.median(all_times), 1)
            figures[f"{kind}_p95_ms"] = round(_p(all_times, 0.95), 1)
        figures["goal_met"] = all(figures[f"{k}_p95_ms"] <= GOAL_P95_MS for k in ("list", "search"))
        print(f"list pages p95 {figures['list_p95_ms']} ms, searches p95 {figures['search_p95_ms']} ms "
              f"(goal <= {GOAL_P95_MS:.0f} ms): {'met' if figures['goal_met'] else 'NOT met'}", flush=True)
        print(json.dumps(figures), flush=True)
        app.extensions["rop"].close()
    finally:
        redis.stop()
        drop()


if __name__ == "__main__":
    main()
