"""The reference-data cache's gain: purchases accepted per second with it and without it.

The Procfile's processes over PostgreSQL, as ``bench/transactions.py`` runs them (gunicorn
2 x 8, one ``rop worker``, one provider worker, the scheduler), started once with the cache
(``ROP_CACHE_TTL=5``, the default) and once without it (``ROP_CACHE_TTL=0``: every purchase
reads its product, offers, price rules, provider configurations and webhook endpoint from the
database), in alternating rounds so that the machine's load falls on both alike, after a round that is
not counted (the first processes on a new database run slower). Each round:
``--clients`` clients post purchases for ``--seconds`` (the accept phase of
``bench/transactions.py``, after a warm-up), then the processes stop.

    .venv/bin/python bench/refcache.py [--clients 32] [--seconds 15] [--rounds 2] [--tenants 1]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Last, in this one process (Flask's test client, same database and Redis), the CPU time per
accepted purchase with and without the cache (``--in-process`` purchases each): a figure the
machine's load disturbs less than a rate.

Prints each round; the last line is one JSON object (``accepted_per_s`` with and without the
cache, their ratio ``gain``, p50/p99, load averages).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from procfile import start, stop, wait_ready
from scratch import scratch_database
from transactions import percentile, post_load, setup, wait_settled

MODES = {"cached": "5", "uncached": "0"}


def accept_round(env: dict, found: dict, ttl: str, clients: int, seconds: int) -> dict:
    """One run of the processes with ``ROP_CACHE_TTL=ttl``: accepted/s and latencies."""
    from hub.embedded_redis import free_port

    port = free_port()
    procs = start(dict(env, ROP_CACHE_TTL=ttl), port=port, workers=1, provider_workers=1, threads=128)
    try:
        wait_ready(port, timeout=120)
        post_load(port, found["token"], 4, f"warm-{uuid.uuid4().hex[:6]}", quota=200)
        wait_settled(found["app"], found["tenant_id"])
        answers, _ = post_load(port, found["tokens"], clients, f"accept-{uuid.uuid4().hex[:6]}", seconds=seconds)
        wait_settled(found["app"], found["tenant_id"])  # the workers finish this round's purchases
    finally:
        stop(procs)
    accepted = [s for code, s in answers if code == 202]
    return {"accepted_per_s": round(len(accepted) / seconds, 1),
            "accept_p50_ms": round(percentile(accepted, 0.50) * 1000, 1),
            "accept_p99_ms": round(percentile(accepted, 0.99) * 1000, 1),
            "errors": sum(1 for code, _ in answers if code != 202)}


def in_process(found: dict, purchases: int) -> dict:
    """CPU (``time.process_time``) per accepted purchase in this one process, through the
    Flask test client on the same database and Redis, with the cache and without it, in
    alternating chunks (a figure the machine's load disturbs less than a rate)."""
    import dataclasses

    from hub.app import create_app

    base = found["app"].extensions["rop"].config
    apps = {mode: create_app(dataclasses.replace(base, cache_ttl=float(ttl))) for mode, ttl in MODES.items()}
    headers = {"Authorization": f"Bearer {found['token']}"}
    spent = dict.fromkeys(MODES, 0.0)
    counts = dict.fromkeys(MODES, 0)
    try:
        clients = {mode: app.test_client() for mode, app in apps.items()}
        for mode, web in clients.items():  # warm
            web.post("/v1/transactions", json={"ref_id": f"warm-{mode}-{uuid.uuid4().hex}", "product_code": "TEL10",
                                               "customer_no": "081200000001"}, headers=headers)
        chunk = 25
        for n in range(0, purchases, chunk):
            for mode, web in (clients.items() if n // chunk % 2 == 0 else list(clients.items())[::-1]):
                started = time.process_time()
                for i in range(chunk):
                    answer = web.post("/v1/transactions", json={
                        "ref_id": f"cpu-{mode}-{n + i}-{uuid.uuid4().hex[:6]}", "product_code": "TEL10",
                        "customer_no": f"0812{n + i:08d}"}, headers=headers)
                    counts[mode] += answer.status_code == 202
                spent[mode] += time.process_time() - started
    finally:
        for app in apps.values():
            app.extensions["rop"].close()
    return {f"cpu_ms_per_accept_{mode}": round(spent[mode] * 1000 / max(counts[mode], 1), 2) for mode in MODES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each mode, alternating")
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--in-process", type=int, default=500,
                        help="purchases per mode for the in-process CPU figure (0: skip)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    from hub.embedded_redis import EmbeddedRedis, free_port

    figures: dict = {"cpus": os.cpu_count(), "load_avg_1m_before": round(os.getloadavg()[0], 2),
                     "clients": args.clients, "tenants": args.tenants, "seconds": args.seconds, "rounds": []}
    print(f"bench/refcache.py: PostgreSQL, gunicorn 2x8, {args.clients} clients, {args.tenants} tenant(s), "
          f"{os.cpu_count()} CPUs, load {figures['load_avg_1m_before']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="rop-bench-refcache-") as tmp:
        tmp_path = Path(tmp)
        redis_server = EmbeddedRedis(tmp_path / "redis", persist=False, port=free_port())
        redis_url = redis_server.ensure_running()
        database_url, drop = scratch_database(args.database_url, "rop_bench_refcache")
        try:
            found = setup(database_url, redis_url, tmp_path / "instance", args.tenants)
            env = dict(os.environ, ROP_DATABASE_URL=database_url, ROP_REDIS_URL=redis_url,
                       ROP_INSTANCE_PATH=str(tmp_path / "instance"), ROP_LOG_LEVEL="WARNING",
                       ROP_LOG_FORMAT="console")
            # a round not counted first: the first processes on a new database run slower
            accept_round(env, found, MODES["cached"], args.clients, min(args.seconds, 10))
            for n in range(args.rounds):
                order = list(MODES.items()) if n % 2 == 0 else list(MODES.items())[::-1]
                for mode, ttl in order:
                    result = accept_round(env, found, ttl, args.clients, args.seconds)
                    result.update(mode=mode, load_avg_1m=round(os.getloadavg()[0], 2))
                    figures["rounds"].append(result)
                    print(f"{mode:>8} (ROP_CACHE_TTL={ttl}): {result['accepted_per_s']}/s, p50 "
                          f"{result['accept_p50_ms']} ms, p99 {result['accept_p99_ms']} ms, "
                          f"{result['errors']} errors, load {result['load_avg_1m']}", flush=True)
            if args.in_process:  # last: no worker runs, its purchases stay accepted
                figures.update(in_process(found, args.in_process))
                print(f"in one process, CPU per accepted purchase: {figures['cpu_ms_per_accept_cached']} ms with "
                      f"the cache, {figures['cpu_ms_per_accept_uncached']} ms without", flush=True)
            found["app"].extensions["rop"].close()
        finally:
            redis_server.stop()
            drop()
    for mode in MODES:
        rates = [r["accepted_per_s"] for r in figures["rounds"] if r["mode"] == mode]
        figures[f"accepted_per_s_{mode}"] = round(statistics.fmean(rates), 1)
    figures["gain"] = round(figures["accepted_per_s_cached"] / figures["accepted_per_s_uncached"], 2) \
        if figures["accepted_per_s_uncached"] else None
    figures["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    print(f"accepted/s with the cache {figures['accepted_per_s_cached']}, without "
          f"{figures['accepted_per_s_uncached']}: x{figures['gain']}", flush=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
