"""Holds per second through the wallets service against the same SQL issued directly via psycopg.

Service: ``hub.wallets.client.place_hold`` in its own committed unit of work per hold
(the wallet read, idempotency-key look-up, journal + hold, then the balance move that
locks the wallet row, 2 entries, the ``wallet.hold_placed`` event through the outbox and
the event store, the tenant's webhook look-up, and after commit the relay: the event's
jobs to Redis and the outbox row marked published in a second short transaction). Raw:
the same statements written by hand with psycopg, in the same order — wallet read, key
look-up, the journal (``ON CONFLICT DO NOTHING``), hold, the conditional ``UPDATE …
RETURNING``, entries, the outbox and event-store rows (one ``WITH … INSERT`` statement, as
the service sends on PostgreSQL), webhook look-up, commit; then the same relay:
the event's handlers' jobs (none are registered for ``wallet.hold_placed`` in this app, so
neither side sends any) and the mark-published transaction (``SET LOCAL
synchronous_commit TO OFF`` + the UPDATE). Until 2026-11-25 the raw side skipped the
webhook look-up and the whole relay, work the service must do: it was made to do them
too (the service side skips nothing); until 22:00 UTC that day both sides locked the
wallet row first (``SELECT … FOR UPDATE``), as the service did then. Each with 1, 4 and
16 concurrent clients (threads, each with its own connection), all on one wallet (they
queue on its row lock) and on one wallet each. Prints figures as it goes and, last, one JSON line.

    .venv/bin/python bench/wallets.py [--holds 960] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Each client first does 10 untimed holds (both sides). Until 2026-11-25 there was no
warm-up and 320 holds per measurement (20 per client at 16 clients), and the raw side's
fresh connections prepared their statements inside the timed part while the service's
pooled connections had theirs from the measurement before.

Creates a scratch PostgreSQL database (dropped at the end) and its own embedded Redis.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg.types.json import Json
from scratch import scratch_database
from sqlalchemy.engine import make_url

from hub.app import create_app
from hub.config import Config
from hub.context import CallContext
from hub.db import Database, new_id, unit_of_work, utcnow
from hub.embedded_redis import EmbeddedRedis, free_port
from hub.migrate import upgrade
from hub.wallets import accounts, checks, client

SCOPES = frozenset({"wallets:read", "wallets:write", "wallets:topup"})
CLIENTS = (1, 4, 16)
WARMUP = 10  # untimed holds per client before each measurement
FUNDS = 10**12
#: the bench's funds are one top-up above the hub's default limit per top-up: it raises the
#: limit through the hub's own setting, for the app it seeds with and the hub it starts
LIMITS = {"ROP_AMOUNT_LIMIT_TOPUP": str(FUNDS)}


def setup_wallets(app, tenant: str, n: int) -> list[str]:
    ctx = CallContext(tenant_id=tenant, client_id="bench", scopes=SCOPES)
    db = app.extensions["rop"].db
    ids = []
    with app.app_context(), unit_of_work(db) as uow:
        ids.append(accounts.get_main_wallet(ctx, uow).id)
        ids += [accounts.create_wallet(ctx, uow, f"w{i}").id for i in range(n - 1)]
        for wid in ids:
            accounts.topup(ctx, uow, wid, FUNDS, f"seed-{wid}")
        uow.commit()
    return ids


def run_threads(clients: int, per_client: int, work, warmup: int = WARMUP) -> float:
    """Holds/s of ``clients`` threads doing ``per_client`` holds each, timed from a common start
    after each did ``warmup`` untimed holds (both sides alike: connections, prepared statements
    and caches warm, as in a running service)."""
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            prepared = work(i)
            for j in range(warmup):
                prepared(-1 - j)
            barrier.wait()
            for j in range(per_client):
                prepared(j)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return clients * per_client / elapsed


def bench_service(app, tenant: str, wallets: list[str], clients: int, per_client: int, tag: str) -> float:
    ctx = CallContext(tenant_id=tenant, client_id="bench", scopes=SCOPES)
    db = app.extensions["rop"].db

    def work(i: int):
        wallet = wallets[i % len(wallets)]

        def one(j: int) -> None:
            with app.app_context(), unit_of_work(db) as uow:
                client.place_hold(ctx, uow, wallet, 1, f"{tag}-{i}-{j}", reference="bench")
                uow.commit()
        return one

    return run_threads(clients, per_client, work)


def bench_raw(app, dsn: str, tenant: str, wallets: list[str], clients: int, per_client: int, tag: str) -> float:
    from hub.bus.outbox import enqueue_envelope
    from hub.bus.registry import registry

    handlers = list(registry(app).handlers_for("wallet.hold_placed", "event"))
    context = CallContext(tenant_id=tenant, client_id="bench", scopes=SCOPES).to_dict()

    def work(i: int):
        wallet = wallets[i % len(wallets)]
        conn = psycopg.connect(dsn)

        def one(j: int) -> None:
            key, now = f"{tag}-{i}-{j}", utcnow()
            hold_id, journal_id, msg_id = new_id("hld"), new_id("jnl"), new_id("msg")
            with conn.transaction():
                cur = conn.cursor()
                # the service's order: read (no lock), key, journal, hold, then the row lock
                # with the balance move, the entries with its balances, the event
                _wid, currency, available, _held, limit = cur.execute(
                    "SELECT id, currency, available, held, overdraft_limit FROM wallets "
                    "WHERE tenant_id = %s AND id = %s", (tenant, wallet)).fetchone()
                found = cur.execute("SELECT fingerprint, result FROM wallet_journals WHERE tenant_id = %s "
                                    "AND kind = 'hold' AND idem_key = %s", (tenant, key)).fetchone()
                if found is not None or available - 1 < -limit:
                    raise RuntimeError("unexpected state")
                cur.execute("INSERT INTO wallet_journals (id, tenant_id, kind, idem_key, fingerprint, result, meta, "
                            "created_at) VALUES (%s, %s, 'hold', %s, %s, %s, %s, %s) "
                            "ON CONFLICT (tenant_id, kind, idem_key) DO NOTHING",
                            (journal_id, tenant, key, "f" * 64,
                             Json({"kind": "hold", "hold_id": hold_id, "wallet_id": wallet, "amount": 1,
                                   "journal_id": journal_id}), Json({"hold_id": hold_id}), now))
                if cur.rowcount != 1:
                    raise RuntimeError("unexpected key race")
                cur.execute("INSERT INTO wallet_holds (id, tenant_id, wallet_id, amount, captured, reversed, "
                            "currency, status, expires_at, reference, created_at, updated_at) VALUES "
                            "(%s, %s, %s, 1, 0, 0, %s, 'placed', NULL, 'bench', %s, %s)",
                            (hold_id, tenant, wallet, currency, now, now))
                moved = cur.execute("UPDATE wallets SET available = available - 1, held = held + 1 "
                                    "WHERE id = %s AND available - 1 >= -overdraft_limit "
                                    "RETURNING available, held", (wallet,)).fetchone()
                if moved is None:
                    raise RuntimeError("unexpected funds race")
                cur.executemany("INSERT INTO wallet_entries (tenant_id, journal_id, wallet_id, account, amount, "
                                "currency, balance_after, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                                [(tenant, journal_id, wallet, f"{wallet}:available", -1, currency, moved[0], now),
                                 (tenant, journal_id, wallet, f"{wallet}:held", 1, currency, moved[1], now)])
                envelope = {"id": msg_id, "type": "wallet.hold_placed", "kind": "event", "version": 1,
                            "tenant_id": tenant, "client_id": "bench", "correlation_id": context["request_id"],
                            "causation_id": None, "occurred_at": now.isoformat(),
                            "payload": {"hold_id": hold_id, "wallet_id": wallet, "amount": 1, "captured": 0,
                                        "currency": currency, "status": "placed", "reference": "bench"},
                            "context": context}
                public = {k: v for k, v in envelope.items() if k not in ("context", "kind")}
                cur.execute("WITH outbox_row AS (INSERT INTO bus_outbox (id, type, kind, tenant_id, envelope, "
                            "created_at, published_at, publish_count) VALUES (%s, 'wallet.hold_placed', 'event', "
                            "%s, %s, %s, NULL, 0)) INSERT INTO bus_events (id, tenant_id, type, envelope, "
                            "occurred_at) VALUES (%s, %s, 'wallet.hold_placed', %s, %s)",
                            (msg_id, tenant, Json(envelope), now, msg_id, tenant, Json(public), now))
                cur.execute("SELECT tenant_id FROM bus_webhook_endpoints WHERE tenant_id = %s", (tenant,)).fetchone()
            # the relay, after commit: the handlers' jobs (none here), then mark the row published
            if handlers:
                with app.app_context():
                    enqueue_envelope(app, envelope)
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit TO OFF")
                conn.execute("UPDATE bus_outbox SET published_at = %s, publish_count = publish_count + 1 "
                             "WHERE id IN (%s)", (utcnow(), msg_id))
        return one

    return run_threads(clients, per_client, work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holds", type=int, default=960, help="holds per measurement (split across clients)")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    database_url, drop = scratch_database(args.admin_url, "rop_bench_wallets")
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    figures: dict[str, object] = {"holds_per_measurement": args.holds, "warmup_per_client": WARMUP,
                                  "database": "postgresql", "goal_ratio": 0.5,
                                  "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        with tempfile.TemporaryDirectory(prefix="rop-bench-wallets-") as tmp:
            redis_server = EmbeddedRedis(Path(tmp) / "redis", persist=False, port=free_port())
            redis_url = redis_server.ensure_running()
            try:
                config = Config.from_env(LIMITS, instance_path=Path(tmp) / "instance", database_url=database_url,
                                         redis_url=redis_url, log_format="console", log_level="ERROR")
                upgrade(config.database_url)
                app = create_app(config)
                # As many pooled connections as the raw side opens (one per client thread):
                # with the default pool (10 + 20 overflow) 16 threads keep closing and
                # reopening overflow connections, which the raw side never does.
                state = app.extensions["rop"]
                state.db.dispose()
                state.db = Database(config.database_url, pool_size=max(CLIENTS), max_overflow=0)
                print(f"bench/wallets.py: {args.holds} holds per measurement, PostgreSQL, threads as clients",
                      flush=True)
                ratios = []
                for clients in CLIENTS:
                    per_client = max(1, args.holds // clients)
                    for layout in ("one", "many"):
                        tenant = f"ten_bench_{clients}_{layout}"
                        wallets = setup_wallets(app, tenant, 1 if layout == "one" else clients)
                        svc = bench_service(app, tenant, wallets, clients, per_client, "s")
                        raw = bench_raw(app, dsn, tenant, wallets, clients, per_client, "r")
                        ratio = svc / raw
                        ratios.append(ratio)
                        label = f"{clients}c_{layout}_wallet{'s' if layout == 'many' else ''}"
                        print(f"{clients:>2} client(s), {layout} wallet(s): service {svc:7.0f} holds/s, "
                              f"raw psycopg {raw:7.0f} holds/s, ratio {ratio:.2f} (goal >= 0.50)", flush=True)
                        figures.update({f"service_{label}_per_s": round(svc, 1), f"raw_{label}_per_s": round(raw, 1),
                                        f"ratio_{label}": round(ratio, 3)})
                    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
                        report = checks.verify_ledger(uow)
                    print(f"verify after {clients} client(s): {'ok' if report['ok'] else 'MISMATCH'} "
                          f"({report['journals']} journals)", flush=True)
                    figures[f"verify_ok_{clients}c"] = report["ok"]
                figures["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
                figures["ratio_min"] = round(min(ratios), 3)
                figures["goal_met"] = min(ratios) >= 0.5
                app.extensions["rop"].close()
            finally:
                redis_server.stop()
    finally:
        drop()
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
