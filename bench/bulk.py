"""A bulk file end to end on the Procfile's processes: time to completion, rows/s, peak RSS.

What runs (each its own OS process, as in production): gunicorn (the Procfile's ``web``
line), ``--workers`` × the Procfile's ``worker`` line (commands, events, webhooks, default:
validation, the bulk service's event subscriber, then chunks), ``--provider-workers`` × ``rop worker
--queues provider --threads 128`` (the transactions' provider calls), ``rop scheduler``.
The sandbox provider answers every purchase after ``--latency-ms``.

The bench writes a CSV of ``--rows`` rows (every number succeeds at the sandbox),
uploads it with ``POST /v1/bulk`` (streamed from disk), polls ``GET /v1/bulk/{id}`` until
the job completes, samples every process's RSS (children included) all along, then checks
that the counts, the transactions and the wallet agree.

    .venv/bin/python bench/bulk.py [--rows 100000] [--latency-ms 200] [--workers 3] [--provider-workers 1]
    .venv/bin/python bench/bulk.py --validation-only --rows 100000   # intake and validation alone
    .venv/bin/python bench/bulk.py --rows 20000 --api-rate 20        # another tenant's API purchases meanwhile

``--api-rate R``: while the file runs (from its upload to its completion), another tenant
posts R purchases a second through ``POST /v1/transactions``; the bench prints their time
to final (``created_at`` to ``completed_at``: p50, p99, max) — what one tenant's big file
costs the others' API purchases (the bulk lane, hub.queues).

Database: a fresh PostgreSQL database made on ``--database-url`` (default: the test server
postgresql://postgres@127.0.0.1:5432) and dropped afterwards; ``--sqlite`` for a SQLite file.
Redis: its own embedded server. Prints figures as it goes; the last line is one JSON object.
Goal: 100,000 rows at 200 ms in ≤ 5 minutes, < 500 MB per process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
from procfile import ordinary_number, postgres_cpu, start, stop, wait_ready
from scratch import scratch_database

GOAL_ROWS = 100_000
GOAL_SECONDS = 300
FUNDS = 10**13
#: the bench's funds are one top-up above the hub's default limit per top-up: it raises the
#: limit through the hub's own setting, for the app it seeds with and the hub it starts
LIMITS = {"ROP_AMOUNT_LIMIT_TOPUP": str(FUNDS)}
GOAL_RSS_MB = 500


def write_csv(path: Path, rows: int) -> None:
    """``rows`` purchases of TEL10, every number an ordinary (succeeding) Telkomsel number."""
    with path.open("w", encoding="utf-8") as out:
        out.write("ref_id,product_code,customer_no\n")
        for n in range(rows):
            out.write(f"bench-{n},TEL10,{ordinary_number(n)}\n")


def setup(database_url: str, redis_url: str, instance: Path, latency_ms: int, funds: int) -> dict:
    """Migrate, seed the sandbox catalog, make a funded tenant; return its token and wallet."""
    from hub.app import create_app
    from hub.auth import issue_access_token
    from hub.config import Config
    from hub.context import CallContext
    from hub.db import unit_of_work
    from hub.migrate import upgrade
    from hub.products.testing import seed_sandbox_catalog
    from hub.tenancy import service as tenancy
    from hub.wallets import accounts as wallets

    upgrade(database_url)
    config = Config.from_env(LIMITS, instance_path=instance, database_url=database_url, redis_url=redis_url,
                             log_format="console", log_level="ERROR", access_token_ttl=4 * 3600)
    app = create_app(config)
    state = app.extensions["rop"]
    seed_sandbox_catalog(app, settings={"latency_ms": latency_ms, "callback_delay": 0.2})
    with app.app_context(), unit_of_work(state.db) as uow:
        system = CallContext.system(actor="bench")
        tenant = tenancy.create_tenant(system, uow, f"Bench {uuid.uuid4().hex[:6]}")
        client, _secret = tenancy.create_client(system, uow, tenant.id, scopes=["bulk:read", "bulk:write"],
                                                rate_limit_per_minute=1_000_000)
        ctx = CallContext.system(actor="bench", tenant_id=tenant.id)
        wallet = wallets.get_main_wallet(ctx, uow)
        if funds:
            wallets.topup(ctx, uow, wallet.id, funds, "bench-funds")
        found = {"tenant_id": tenant.id, "wallet_id": wallet.id, "app": app,
                 "token": issue_access_token(config.secret_key, client.id, tenant.id, client.scope_set, 4 * 3600)}
        # another tenant, buying through the API while the file runs (--api-rate)
        other = tenancy.create_tenant(system, uow, f"Bench API {uuid.uuid4().hex[:6]}")
        api_client, _secret = tenancy.create_client(system, uow, other.id, scopes=["transactions:write"],
                                                    rate_limit_per_minute=1_000_000)
        other_ctx = CallContext.system(actor="bench", tenant_id=other.id)
        wallets.topup(other_ctx, uow, wallets.get_main_wallet(other_ctx, uow).id, FUNDS, "bench-funds")
        found["api_tenant_id"] = other.id
        found["api_token"] = issue_access_token(config.secret_key, api_client.id, other.id, api_client.scope_set,
                                                4 * 3600)
        uow.commit()
    return found


class ApiLoad(threading.Thread):
    """Another tenant's API purchases at ``rate`` a second until stopped: their ids."""

    def __init__(self, base: str, token: str, rate: float):
        super().__init__(daemon=True)
        self.base, self.token, self.rate = base, token, rate
        self.ids: list[str] = []
        self.errors = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=30) as http:
            n = 0
            next_at = time.monotonic()
            while not self.stop_event.is_set():
                response = http.post("/v1/transactions", json={"ref_id": uuid.uuid4().hex, "product_code": "TEL10",
                                                               "customer_no": ordinary_number(500_000 + n)})
                n += 1
                if response.status_code in (201, 202):
                    self.ids.append(response.json()["id"])
                else:
                    self.errors += 1
                next_at += 1 / self.rate
                self.stop_event.wait(max(0.0, next_at - time.monotonic()))


def api_times(app, ids: list[str], timeout: float = 120) -> dict:
    """The API purchases' time to final (ms): p50, p99 and max; waits for the last ones."""
    from sqlalchemy import select

    from hub.db import unit_of_work
    from hub.transactions.models import Transaction

    deadline = time.monotonic() + timeout
    while True:
        with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
            rows = uow.session.execute(select(Transaction.created_at, Transaction.completed_at)
                                       .where(Transaction.id.in_(ids))).all()
        if all(done is not None for _, done in rows) or time.monotonic() > deadline:
            break
        time.sleep(1)
    spans = sorted((done - created).total_seconds() * 1000 for created, done in rows if done is not None)
    pick = (lambda p: round(spans[min(len(spans) - 1, int(p * len(spans)))], 1)) if spans else (lambda p: None)
    return {"count": len(ids), "final": len(spans), "to_final_p50_ms": pick(0.5), "to_final_p99_ms": pick(0.99),
            "to_final_max_ms": round(spans[-1], 1) if spans else None}


class RssSampler(threading.Thread):
    """Peak RSS (MB) and CPU seconds of each named process tree, sampled every ``every`` seconds;
    and the PostgreSQL server's CPU seconds meanwhile."""

    def __init__(self, procs: dict[str, subprocess.Popen], every: float = 0.5):
        super().__init__(daemon=True)
        self.procs, self.every = procs, every
        self.peak: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.postgres_start = postgres_cpu()
        self.postgres_cpu = 0.0

    def run(self) -> None:
        while not self.stop_event.wait(self.every):
            for name, proc in self.procs.items():
                try:
                    root = psutil.Process(proc.pid)
                    tree = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                for n, p in enumerate(tree):
                    try:
                        rss = p.memory_info().rss / 2**20
                        times = p.cpu_times()
                    except psutil.NoSuchProcess:
                        continue
                    key = name if n == 0 else f"{name}/child{n}"
                    self.peak[key] = max(self.peak.get(key, 0.0), rss)
                    self.cpu[key] = max(self.cpu.get(key, 0.0), times.user + times.system)
            self.postgres_cpu = postgres_cpu() - self.postgres_start


def check(app, tenant_id: str, wallet_id: str, job: dict, funds: int = FUNDS) -> dict:
    """The counts, the transactions and the wallet agree."""
    from sqlalchemy import func, select

    from hub.db import unit_of_work
    from hub.transactions.models import Transaction
    from hub.wallets.models import Wallet

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        by_status = dict(uow.session.execute(select(Transaction.status, func.count()).where(
            Transaction.tenant_id == tenant_id, Transaction.source.like(f"bulk:{job['id']}:%"))
            .group_by(Transaction.status)).all())
        spent = uow.session.scalar(select(func.coalesce(func.sum(Transaction.price), 0)).where(
            Transaction.tenant_id == tenant_id, Transaction.status == "succeeded"))
        wallet = uow.session.get(Wallet, wallet_id)
        balances = (wallet.available, wallet.held)
    return {"transactions": sum(by_status.values()), "transactions_succeeded": by_status.get("succeeded", 0),
            "wallet_consistent": balances == (funds - spent, 0),
            "counts_agree": job["succeeded"] == by_status.get("succeeded", 0)
            and job["amount_succeeded"] == spent}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3, help="processes on the commands and events queues")
    parser.add_argument("--provider-workers", type=int, default=1, help="processes on the provider queue")
    parser.add_argument("--threads", type=int, default=128, help="threads per provider worker")
    parser.add_argument("--db-connections", type=int, default=None,
                        help="database connections per provider worker (rop worker --db-connections)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--api-rate", type=float, default=0.0,
                        help="another tenant's API purchases a second while the file runs (their time to final)")
    parser.add_argument("--validation-only", action="store_true",
                        help="an unfunded wallet: the job is rejected (on_insufficient_funds=reject) right after "
                             "validation; measures upload, validation and results.csv of a big file")
    args = parser.parse_args()

    from hub.embedded_redis import EmbeddedRedis, free_port

    figures: dict = {"load_avg_1m_before": round(os.getloadavg()[0], 2), "rows": args.rows,
                     "validation_only": args.validation_only, "latency_ms": args.latency_ms, "workers": args.workers,
                     "provider_workers": args.provider_workers, "threads": args.threads,
                     "db_connections": args.db_connections, "cpus": os.cpu_count(),
                     "goal_seconds": GOAL_SECONDS, "goal_rss_mb": GOAL_RSS_MB}
    with tempfile.TemporaryDirectory(prefix="rop-bench-bulk-") as tmp:
        tmp_path = Path(tmp)
        redis_server = EmbeddedRedis(tmp_path / "redis", persist=False, port=free_port())
        redis_url = redis_server.ensure_running()
        if args.sqlite:
            database_url, drop = f"sqlite:///{tmp_path / 'bench.sqlite3'}", (lambda: None)
        else:
            database_url, drop = scratch_database(args.database_url, "rop_bench_bulk")
        figures["database"] = "sqlite" if args.sqlite else "postgresql"
        procs: dict[str, subprocess.Popen] = {}
        sampler = None
        try:
            funds = 0 if args.validation_only else FUNDS
            found = setup(database_url, redis_url, tmp_path / "instance", args.latency_ms, funds)
            csv_path = tmp_path / "rows.csv"
            write_csv(csv_path, args.rows)
            figures["file_mb"] = round(csv_path.stat().st_size / 2**20, 1)
            print(f"bench/bulk.py: {args.rows} rows ({figures['file_mb']} MB), sandbox latency {args.latency_ms} ms, "
                  f"{figures['database']}, {args.workers} worker(s) + {args.provider_workers} provider worker(s) "
                  f"x {args.threads} threads, {os.cpu_count()} CPUs", flush=True)
            port = free_port()
            env = dict(os.environ, ROP_DATABASE_URL=database_url, ROP_REDIS_URL=redis_url,
                       ROP_INSTANCE_PATH=str(tmp_path / "instance"), ROP_LOG_LEVEL="WARNING", ROP_LOG_FORMAT="console",
                       ROP_PUBLIC_URL=f"http://127.0.0.1:{port}", **LIMITS)
            procs = start(env, port=port, workers=args.workers, provider_workers=args.provider_workers,
                          threads=args.threads, web_timeout=600, db_connections=args.db_connections)
            sampler = RssSampler(procs)
            sampler.start()
            base = f"http://127.0.0.1:{port}"
            wait_ready(port)
            headers = {"Authorization": f"Bearer {found['token']}", "Content-Type": "text/csv"}
            api_load = ApiLoad(base, found["api_token"], args.api_rate) if args.api_rate > 0 else None
            with httpx.Client(base_url=base, headers={"Authorization": headers["Authorization"]},
                              timeout=600) as http:
                started = time.monotonic()
                if api_load is not None:
                    api_load.start()
                with csv_path.open("rb") as body:
                    response = http.post("/v1/bulk", content=iter(lambda: body.read(64 * 1024), b""),
                                         headers=headers, params={"on_invalid": "reject"})
                response.raise_for_status()
                job = response.json()
                figures["upload_s"] = round(time.monotonic() - started, 2)
                print(f"uploaded in {figures['upload_s']} s: {job['id']} {job['status']}, {job['total']} rows",
                      flush=True)
                last_print = 0.0
                while True:
                    job = http.get(f"/v1/bulk/{job['id']}").json()
                    elapsed = time.monotonic() - started
                    if "validated_s" not in figures and job["status"] != "validating":
                        figures["validated_s"] = round(elapsed, 1)
                        print(f"validated at {figures['validated_s']} s: {job['status']}, {job['valid']} valid, "
                              f"{job['invalid']} invalid", flush=True)
                    if ("all_sent_s" not in figures and job["status"] not in ("validating", "rejected")
                            and job["submitted"] >= job["valid"]):
                        figures["all_sent_s"] = round(elapsed, 1)
                        figures["sending_rows_per_s"] = round(job["valid"] / max(0.1, elapsed - figures.get(
                            "validated_s", 0)), 1)
                    done = job["valid"] - job["pending"] if job["status"] != "validating" else 0
                    if elapsed - last_print >= 10 or job["status"] in ("completed", "rejected"):
                        last_print = elapsed
                        print(f"{elapsed:7.1f} s  {job['status']:<10} submitted {job['submitted']:>7}  settled "
                              f"{done:>7}/{job['valid']}  ({done / elapsed:6.1f} rows/s overall)", flush=True)
                    if job["status"] in ("completed", "rejected", "cancelled") or elapsed > args.timeout:
                        break
                    time.sleep(1.0)
                if api_load is not None:
                    api_load.stop_event.set()
                    api_load.join(60)
                    figures["api_during_bulk"] = dict(api_times(found["app"], api_load.ids), rate=args.api_rate,
                                                      errors=api_load.errors)
                    print(f"another tenant's API purchases meanwhile: {figures['api_during_bulk']}", flush=True)
                figures["status"] = job["status"]
                if figures.get("validated_s"):
                    figures["intake_and_validation_rows_per_s"] = round(args.rows / figures["validated_s"], 1)
                figures["seconds"] = round(time.monotonic() - started, 1)
                figures["rows_per_s"] = round(job["succeeded"] / figures["seconds"], 1)
                figures["succeeded"] = job["succeeded"]
                figures["failed"] = job["failed"]
                figures["processing_rows_per_s"] = round(job["succeeded"] / max(0.1, figures["seconds"]
                                                                                 - figures.get("validated_s", 0)), 1)
                results_started = time.monotonic()
                size = 0
                with http.stream("GET", f"/v1/bulk/{job['id']}/results.csv") as results:
                    for piece in results.iter_bytes():
                        size += len(piece)
                figures["results_csv_s"] = round(time.monotonic() - results_started, 2)
                figures["results_csv_mb"] = round(size / 2**20, 1)
            sampler.stop_event.set()
            sampler.join()
            figures["peak_rss_mb"] = {k: round(v, 1) for k, v in sorted(sampler.peak.items())}
            figures["peak_rss_mb_max"] = round(max(sampler.peak.values()), 1)
            figures["cpu_s"] = {k: round(v, 1) for k, v in sorted(sampler.cpu.items())}
            figures["cpu_s"]["postgres"] = round(sampler.postgres_cpu, 1)
            figures["cpu_ms_per_row"] = round(1000 * sum(figures["cpu_s"].values()) / max(1, job["succeeded"]), 2)
            figures.update(check(found["app"], found["tenant_id"], found["wallet_id"], job, funds))
            figures["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
            # the goal is 100,000 rows in 300 s: a smaller file must go at the same rate to meet it
            figures["goal_rows_per_s"] = round(GOAL_ROWS / GOAL_SECONDS, 1)
            figures["goal_met"] = (not args.validation_only and figures["status"] == "completed"
                                   and figures["rows_per_s"] >= GOAL_ROWS / GOAL_SECONDS
                                   and figures["peak_rss_mb_max"] < GOAL_RSS_MB)
            figures["goal_rss_met"] = figures["peak_rss_mb_max"] < GOAL_RSS_MB
            print(f"{figures['status']} in {figures['seconds']} s: {figures['rows_per_s']} rows/s "
                  f"(after validation {figures['processing_rows_per_s']} rows/s); results.csv in "
                  f"{figures['results_csv_s']} s; peak RSS {figures['peak_rss_mb']}", flush=True)
            print(f"CPU seconds {figures['cpu_s']}: {figures['cpu_ms_per_row']} ms of CPU per row", flush=True)
            print(f"transactions {figures['transactions']}, counts agree {figures['counts_agree']}, wallet "
                  f"consistent {figures['wallet_consistent']}; goal ({GOAL_ROWS} rows in <= {GOAL_SECONDS} s, i.e. "
                  f">= {figures['goal_rows_per_s']} rows/s, < {GOAL_RSS_MB} MB per process) "
                  f"{'met' if figures['goal_met'] else 'NOT met'} (memory {'met' if figures['goal_rss_met'] else 'NOT met'})",
                  flush=True)
            found["app"].extensions["rop"].close()
        finally:
            if sampler is not None:
                sampler.stop_event.set()
            stop(procs)
            redis_server.stop()
            drop()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
