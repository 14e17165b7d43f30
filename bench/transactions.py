"""Transactions on the Procfile's processes over PostgreSQL: accepted/s, completed/s, latency.

What runs (each its own OS process, as the Procfile has them): gunicorn (``web``: ``--web``
workers, 2 as in the Procfile, x 8 gthreads), ``rop worker`` on the commands/events/webhooks/
default queues (``--workers`` of them), ``rop worker --queues provider --threads 16``
(``--provider-workers``), ``rop scheduler``. The sandbox provider answers purchases after its
``latency_ms``. Clients are separate processes (``--clients`` HTTP connections in all) posting
``POST /v1/transactions``. Each bench client's own rate limit is raised (its
``rate_limit_per_minute``; the hub's default is 1,200 a minute) so that the limiter is not
what bounds the figures.

1. **Accept**: ``--clients`` clients post purchases for ``--seconds``, spread over 1 tenant,
   then over 8 (``--tenants 1,8``: each tenant its own wallet); accepted/s and the p50/p99
   accept latency. In the same run, on the same server:

   - pgbench's built-in TPC-B-like script with as many clients for as long on a scratch
     database: the ratio accepted/s ÷ pgbench tps (goal ≥ 0.5);
   - the **minimal baseline** (bench/minimal_accept.py): the same accept written as plainly
     as the stack allows (Flask under gunicorn with the same settings, the hub's token
     verified in process, the body validated, one round trip to a PL/pgSQL function), loaded
     by the same clients with the same tokens at each tenant count: ``hub_over_minimal`` =
     the hub's accepted/s ÷ the minimal's (goal ≥ 0.5) and ``p99_over_minimal_p99`` (goal ≤ 2).
     The hub's workers process its accepted purchases during its accept window, on the same
     cores; the minimal has nothing behind it. So each tenant count runs twice: with the
     pipeline working (``accept_t<n>``, the top-level ``accepted_per_s``), and with every
     process but the web one and the relay paused by SIGSTOP (``accept_alone_t<n>``,
     ``alone_over_minimal_t<n>``): the accept's own cost, like for like — the relay moving
     the accepted purchases' outbox rows to the queue is part of accepting them (paused,
     its heartbeat would lapse and the web workers relay their own commits again). The
     paused runs alternate with the minimal's, ``--rounds`` times (3), the pipeline paused
     throughout, and the round of the median ratio is reported (each round's figures are
     kept under ``rounds``): on this shared machine the same code's CPU per accept moved by
     half between runs minutes apart, so one hub run and one minimal run minutes later
     compare the machine as much as the code. Which side goes first alternates from round
     to round (the hub first in rounds 1 and 3): the side measured second did better in
     alternated runs here, whichever it was. Each round prints the CPU per accept of each
     server process (web, relay, PostgreSQL's processes, Redis) on both sides.
2. **End to end** (``--latencies``; ``--skip-e2e`` or ``--latencies ''``: none): at sandbox
   latency 0 ms and 200 ms, ``--count`` purchases are posted as fast as the clients go and the
   clock runs until every one is final: completed/s (goal at 200 ms: ≥ 500/s). The wallet
   must agree with the succeeded transactions. Each run prints the CPU per purchase of each
   process (its children included: gunicorn's workers) and of PostgreSQL's server processes
   together. ``--skip-accept`` runs only this part (for a scaling curve over ``--web``,
   ``--workers`` and ``--provider-workers``).

    .venv/bin/python bench/transactions.py [--clients 32] [--seconds 15] [--rounds 3] [--count 3000]
        [--tenants 1,8] [--web 2] [--skip-e2e | --skip-accept] [--workers 1] [--provider-workers 1]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Prints its figures as it goes, with the 1-minute load average at each phase (other work on
the machine moves them); the last line is one JSON object of them (goals included). Its
top-level accept figures are those at the first tenant count; ``accept_t<n>`` and
``minimal_accept_t<n>`` hold each count's.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import minimal_accept
from procfile import ordinary_number, process_cpu, start, stop, wait_ready
from scratch import scratch_database
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

GOAL_ACCEPT_RATIO = 0.5
GOAL_COMPLETED_AT_200MS = 500.0
GOAL_HUB_OVER_MINIMAL = 0.5      # the hub's accepted/s ÷ the minimal baseline's
GOAL_P99_OVER_MINIMAL_P99 = 2.0  # the hub's p99 accept latency ÷ the minimal baseline's
#: each bench client's rate limit a minute (``rate_limit_per_minute``; the hub's default is
#: hub.auth.DEFAULT_RATE_LIMIT_PER_MINUTE, 1,200): far above what the clients can post
CLIENT_RATE_LIMIT = 10_000_000
#: the minimal baseline's catalog (the price of the product the clients buy)
MINIMAL_CATALOG = {"TEL10": 10_500}
FUNDS = 10**14
#: calls in flight per provider configuration (default 64): at 200 ms, 64 cap one
#: configuration at 320 calls/s; 256 keeps the limit from being what bounds the figures
PROVIDER_LIMIT = 256
#: the bench's funds are one top-up above the hub's default limit per top-up: it raises the
#: limit through the hub's own setting, for the app it seeds with and the hub it starts
LIMITS = {"ROP_AMOUNT_LIMIT_TOPUP": str(FUNDS), "ROP_TX_PROVIDER_LIMIT": str(PROVIDER_LIMIT)}


# -- set-up -----------------------------------------------------------------------------------
def setup(database_url: str, redis_url: str, instance: Path, tenants: int = 1) -> dict:
    """Migrate, seed the sandbox catalog, tenants with a funded wallet and a client token each
    (the first one's in ``tenant_id``/``wallet_id``/``token``; every token in ``tokens``)."""
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
    seed_sandbox_catalog(app, settings={"latency_ms": 0, "callback_delay": 0.2})
    tokens, tenant_ids = [], []
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        system = CallContext.system(actor="bench")
        for n in range(tenants):
            tenant = tenancy.create_tenant(system, uow, f"Bench {uuid.uuid4().hex[:6]}")
            client, _secret = tenancy.create_client(system, uow, tenant.id, rate_limit_per_minute=CLIENT_RATE_LIMIT)
            ctx = CallContext.system(actor="bench", tenant_id=tenant.id)
            wallet = wallets.get_main_wallet(ctx, uow)
            wallets.topup(ctx, uow, wallet.id, FUNDS, "bench-funds")
            tokens.append(issue_access_token(config.secret_key, client.id, tenant.id, client.scope_set, 4 * 3600))
            tenant_ids.append(tenant.id)
            if n == 0:
                found = {"tenant_id": tenant.id, "wallet_id": wallet.id, "token": tokens[0], "app": app,
                         "secret_key": config.secret_key}
        found["tokens"], found["tenant_ids"] = tokens, tenant_ids
        uow.commit()
    return found


def set_latency(app, latency_ms: int) -> None:
    """Change the sandbox configuration's latency (the workers see it within hub.cache.REFRESH)."""
    from hub.cache import refcache
    from hub.db import unit_of_work
    from hub.providers import client as providers
    from hub.providers import service

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        for config in providers.list_configs(uow):
            if config["provider_code"] == "sandbox":
                row = service.get_config(uow, config["config_id"])
                row.settings = {**row.settings, "latency_ms": latency_ms}
        refcache().bump(uow, "providers")  # the workers keep prepared configurations (hub.cache)
        uow.commit()


# -- clients ----------------------------------------------------------------------------------
def _client(port: int, token: str, prefix: str, seconds: float | None, quota: int | None,
            counter, ready, go, results) -> None:
    """One connection posting purchases for ``seconds`` after the start signal (or until the
    shared counter reaches ``quota``); sends back ``[(status, seconds), ...]``."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    ready.release()
    go.wait()
    until = time.time() + (seconds if seconds is not None else 7200)
    while time.time() < until:
        with counter.get_lock():
            n = counter.value
            counter.value += 1
        if quota is not None and n >= quota:
            break
        body = json.dumps({"ref_id": f"{prefix}-{n}", "product_code": "TEL10", "customer_no": ordinary_number(n)})
        started = time.perf_counter()
        try:
            conn.request("POST", "/v1/transactions", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            out.append((response.status, time.perf_counter() - started))
        except (OSError, http.client.HTTPException):
            out.append((0, time.perf_counter() - started))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    results.put(out)


def post_load(port: int, token: str | list[str], clients: int, prefix: str, *, seconds: float | None = None,
              quota: int | None = None) -> tuple[list[tuple[int, float]], float]:
    """``clients`` connections, one client process each, posting purchases (client i with the
    i-th token, round robin, when given several: several tenants, so several wallets)."""
    tokens = token if isinstance(token, list) else [token]
    mp = multiprocessing.get_context("spawn")
    counter, results, ready, go = mp.Value("l", 0), mp.Queue(), mp.Semaphore(0), mp.Event()
    procs = [mp.Process(target=_client, args=(port, tokens[i % len(tokens)], prefix, seconds, quota, counter, ready,
                                              go, results)) for i in range(clients)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.acquire(timeout=300)
    start_at = time.time()
    go.set()
    answers: list[tuple[int, float]] = []
    for _ in procs:
        answers += results.get(timeout=7200)
    for proc in procs:
        proc.join(30)
    return answers, start_at


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def accept_figures(answers: list[tuple[int, float]], seconds: int) -> dict:
    """Accepted/s (202s only), their p50/p99/mean latency (ms), and the other answers."""
    accepted = [s for code, s in answers if code == 202]
    return {"accepted_per_s": round(len(accepted) / seconds, 1),
            "p50_ms": round(percentile(accepted, 0.50) * 1000, 1),
            "p99_ms": round(percentile(accepted, 0.99) * 1000, 1),
            "mean_ms": round(statistics.fmean(accepted) * 1000, 1) if accepted else None,
            "errors": sum(1 for code, _ in answers if code != 202)}


def server_cpu(procs: dict[str, subprocess.Popen], redis_server=None) -> dict[str, float]:
    """CPU seconds used so far by the server side: each process (its children included),
    PostgreSQL's, and the bench's Redis server's when given."""
    import psutil

    spent = process_cpu(procs)
    pid = redis_server.pid() if redis_server is not None else None
    if pid:
        try:
            times = psutil.Process(pid).cpu_times()
            spent["redis"] = times.user + times.system
        except psutil.Error:
            pass
    return spent


def cpu_per(before: dict[str, float], after: dict[str, float], count: float, names: tuple[str, ...]) -> dict:
    """CPU ms per purchase of each named process between two :func:`server_cpu` readings,
    and their ``total``."""
    if not count:
        return {}
    out = {name: round((after.get(name, 0.0) - before.get(name, 0.0)) * 1000 / count, 2) for name in names
           if name in after}
    out["total"] = round(sum(out.values()), 2)
    return out


def load_1m() -> float:
    return round(os.getloadavg()[0], 2)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def start_minimal(database_url: str, found: dict, web_workers: int):
    """The minimal baseline (bench/minimal_accept.py) installed on the bench's scratch
    database and served, warmed up: ``(process, port)``."""
    from hub.embedded_redis import free_port

    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    minimal_accept.install(dsn, found["tenant_ids"], FUNDS, MINIMAL_CATALOG)
    port = free_port()
    web = minimal_accept.start_web(dsn, found["secret_key"], port, workers=web_workers)
    try:
        wait_ready(port, timeout=60)
        post_load(port, found["token"], 4, "warmup", quota=200)
    except BaseException:
        stop({"minimal": web})
        raise
    return web, port


def paused_rounds(procs: dict, redis_server, port: int, minimal_web, minimal_port: int, tokens: list[str],
                  args) -> tuple[dict, dict]:
    """The hub's accept with its pipeline paused (SIGSTOP of every process but web and the
    relay, SIGCONT after all rounds) and the minimal's, alternated ``args.rounds`` times (the
    first side alternating too), so that the machine's drift (a shared VM: the same code's CPU
    per accept moved by half between runs minutes apart) falls on both sides alike. :return: the
    hub's and the minimal's figures of the round whose ratio is the median, each with every round's."""
    n = len(tokens)
    paused = [proc for name, proc in procs.items() if name not in ("web", "relay")]
    rounds: list[tuple[dict, dict]] = []
    # each side: (port, processes whose CPU counts, Redis server, ref_id prefix, processes reported)
    targets = {"hub": (port, procs, redis_server, f"alone{n}", ("web", "relay", "postgres", "redis")),
               "minimal": (minimal_port, {"web": minimal_web}, None, f"minimal{n}", ("web", "postgres"))}
    for proc in paused:
        proc.send_signal(signal.SIGSTOP)
    try:
        for round_ in range(args.rounds):
            # which side goes first alternates: on this machine the side measured second in a
            # round did better in alternated runs, whichever it was (bench/RESULTS.md)
            sides = ("hub", "minimal") if round_ % 2 == 0 else ("minimal", "hub")
            measured: dict[str, dict] = {}
            for side in sides:
                at, watched, watched_redis, prefix, names = targets[side]
                before, cpu_before = load_1m(), server_cpu(watched, watched_redis)
                answers, _ = post_load(at, tokens, args.clients, f"{prefix}-{uuid.uuid4().hex[:6]}",
                                       seconds=args.seconds)
                cpu_after = server_cpu(watched, watched_redis)
                figures = {**accept_figures(answers, args.seconds), "load_avg_1m": [before, load_1m()],
                           "measured": "first" if side == sides[0] else "second"}
                figures["cpu_ms_per_accept"] = cpu_per(cpu_before, cpu_after,
                                                       figures["accepted_per_s"] * args.seconds, names)
                measured[side] = figures
            hub, low = measured["hub"], measured["minimal"]
            hub["over_minimal"] = ratio(hub["accepted_per_s"], low["accepted_per_s"])
            hub["p99_over_minimal_p99"] = ratio(hub["p99_ms"], low["p99_ms"])
            rounds.append((hub, low))
            print(f"round {round_ + 1}, {n} tenant(s), pipeline paused, {sides[0]} first: hub {hub['accepted_per_s']}/s (p50 "
                  f"{hub['p50_ms']}, p99 {hub['p99_ms']} ms, {hub['errors']} errors; CPU ms per accept "
                  f"{hub['cpu_ms_per_accept']}), minimal {low['accepted_per_s']}/s (p50 {low['p50_ms']}, p99 "
                  f"{low['p99_ms']} ms, {low['errors']} errors; CPU ms per accept {low['cpu_ms_per_accept']}): "
                  f"hub / minimal {hub['over_minimal']}, p99 {hub['p99_over_minimal_p99']}", flush=True)
    finally:
        for proc in paused:
            proc.send_signal(signal.SIGCONT)
    time.sleep(1.0)
    dead = {name: proc.returncode for name, proc in procs.items() if proc.poll() is not None}
    if dead:
        raise RuntimeError(f"hub processes ended during the paused rounds (exit codes): {dead}")
    ordered = sorted(rounds, key=lambda pair: pair[0]["over_minimal"] or 0.0)
    hub, low = ordered[len(ordered) // 2]
    hub = dict(hub, rounds=[pair[0] for pair in rounds])
    low = dict(low, rounds=[pair[1] for pair in rounds])
    return hub, low


# -- pgbench ----------------------------------------------------------------------------------
def pgbench_tps(base: str, clients: int, seconds: int) -> float:
    """pgbench's built-in TPC-B-like script on a scratch database of the same server."""
    url, drop = scratch_database(base, "rop_bench_pgbench")
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "10", dsn], check=True, capture_output=True)
        done = subprocess.run(["pgbench", "-c", str(clients), "-j", str(min(clients, 4)), "-T", str(seconds),
                               "-n", dsn], check=True, capture_output=True, text=True)
        match = re.search(r"tps = ([\d.]+)", done.stdout)
        if not match:
            raise RuntimeError(f"no tps in pgbench's output: {done.stdout[-500:]}")
        return float(match.group(1))
    finally:
        drop()


# -- completion -------------------------------------------------------------------------------
def count_final(app, tenant_id: str, prefix: str) -> tuple[int, int]:
    """(final, succeeded) among the transactions whose ref_id starts with ``prefix``."""
    from hub.db import unit_of_work
    from hub.transactions.models import Transaction

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = dict(uow.session.execute(select(Transaction.status, func.count()).where(
            Transaction.tenant_id == tenant_id, Transaction.ref_id.startswith(prefix + "-"))
            .group_by(Transaction.status)).all())
    final = sum(v for k, v in rows.items() if k in ("succeeded", "failed", "refunded", "review"))
    return final, rows.get("succeeded", 0)


def wait_settled(app, tenant_id: str, timeout: float = 900) -> None:
    """Wait until no transaction (of any tenant) is pending or processing."""
    from hub.db import unit_of_work
    from hub.transactions.models import Transaction

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
            left = uow.session.scalar(select(func.count()).select_from(Transaction).where(
                Transaction.status.in_(("pending", "processing"))))
        if not left:
            return
        time.sleep(1.0)
    raise RuntimeError("transactions still in flight after the timeout")


def end_to_end(app, port: int, found: dict, clients: int, count: int, latency_ms: int) -> dict:
    """Post ``count`` purchases as fast as the clients go; the clock runs from the first
    acceptance to the moment the last one is final."""
    import threading

    set_latency(app, latency_ms)
    prefix = f"e2e{latency_ms}-{uuid.uuid4().hex[:6]}"
    loader = threading.Thread(target=post_load, args=(port, found["token"], clients, prefix), kwargs={"quota": count})
    loader.start()
    last_print = 0.0
    while True:
        final, succeeded = count_final(app, found["tenant_id"], prefix)
        now = time.monotonic()
        if now - last_print >= 2:
            last_print = now
            print(f"  latency {latency_ms} ms: {final}/{count} final", flush=True)
        if final >= count:
            break
        time.sleep(0.2)
    done = time.time()
    loader.join(120)
    elapsed = done - _started_at(app, found["tenant_id"], prefix)
    spans = _spans(app, found["tenant_id"], prefix)
    return {"count": count, "succeeded": succeeded, "seconds": round(elapsed, 1),
            "completed_per_s": round(count / elapsed, 1), **spans}


def _spans(app, tenant_id: str, prefix: str) -> dict:
    """How long posting took (first to last acceptance) and each transaction's time to final."""
    from hub.db import unit_of_work
    from hub.transactions.models import Transaction

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = uow.session.execute(select(Transaction.created_at, Transaction.completed_at).where(
            Transaction.tenant_id == tenant_id, Transaction.ref_id.startswith(prefix + "-"))).all()
    created = [c for c, _ in rows]
    to_final = [(d - c).total_seconds() for c, d in rows if d is not None]
    return {"posting_s": round((max(created) - min(created)).total_seconds(), 1),
            "to_final_p50_ms": round(percentile(to_final, 0.5) * 1000, 1),
            "to_final_p99_ms": round(percentile(to_final, 0.99) * 1000, 1)}


def _started_at(app, tenant_id: str, prefix: str) -> float:
    """When the first of these transactions was accepted (wall clock, seconds)."""
    from hub.db import unit_of_work
    from hub.transactions.models import Transaction

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        first = uow.session.scalar(select(func.min(Transaction.created_at)).where(
            Transaction.tenant_id == tenant_id, Transaction.ref_id.startswith(prefix + "-")))
    return first.timestamp()


def check_wallet(app, tenant_id: str, wallet_id: str) -> bool:
    """The wallet holds the funds minus every succeeded transaction's price, nothing held."""
    from hub.db import unit_of_work
    from hub.transactions.models import Transaction
    from hub.wallets.models import Wallet

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        spent = uow.session.scalar(select(func.coalesce(func.sum(Transaction.price), 0)).where(
            Transaction.tenant_id == tenant_id, Transaction.status == "succeeded"))
        wallet = uow.session.get(Wallet, wallet_id)
        return wallet.available == FUNDS - spent and wallet.held == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the paused accept alternated with the minimal baseline's")
    parser.add_argument("--count", type=int, default=3000, help="purchases per end-to-end run")
    parser.add_argument("--latencies", default="0,200", help="sandbox latencies (ms) of the end-to-end runs")
    parser.add_argument("--skip-e2e", action="store_true", help="accept only (as --latencies '')")
    parser.add_argument("--skip-accept", action="store_true",
                        help="end to end only: no accept runs, pgbench or minimal baseline (scaling curves)")
    parser.add_argument("--tenants", default="1,8",
                        help="tenant counts (each tenant its own wallet) the accept clients are spread over, "
                             "one accept run of the hub and of the minimal baseline each")
    parser.add_argument("--web", type=int, default=2, help="gunicorn workers of the hub's web process "
                                                          "(and of the minimal baseline's)")
    parser.add_argument("--workers", type=int, default=1, help="rop worker processes (commands, events, ...)")
    parser.add_argument("--provider-workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=16, help="job threads of each provider worker "
                                                                 "(the Procfile's 16)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    tenant_counts = [int(x) for x in str(args.tenants).split(",") if x.strip()]
    latencies = [] if args.skip_e2e else [int(x) for x in args.latencies.split(",") if x.strip()]

    from hub.embedded_redis import EmbeddedRedis, free_port

    figures: dict = {"cpus": os.cpu_count(), "load_avg_1m_before": round(os.getloadavg()[0], 2),
                     "clients": args.clients, "workers": args.workers, "provider_workers": args.provider_workers,
                     "threads": args.threads, "web_workers": args.web, "goal_accept_ratio": GOAL_ACCEPT_RATIO,
                     "goal_completed_per_s_at_200ms": GOAL_COMPLETED_AT_200MS,
                     "goal_hub_over_minimal": GOAL_HUB_OVER_MINIMAL,
                     "goal_p99_over_minimal_p99": GOAL_P99_OVER_MINIMAL_P99,
                     "client_rate_limit_per_minute": CLIENT_RATE_LIMIT, "provider_limit": PROVIDER_LIMIT}
    print(f"bench/transactions.py: PostgreSQL, gunicorn {args.web}x8, {args.workers} worker(s), "
          f"{args.provider_workers} provider worker(s) x {args.threads} threads, {args.clients} clients, "
          f"{os.cpu_count()} CPUs, load {figures['load_avg_1m_before']}", flush=True)
    print(f"each bench client's rate limit is raised to {CLIENT_RATE_LIMIT:,}/min (its rate_limit_per_minute; the "
          f"hub's default is 1,200/min): the limiter is not the bound; provider calls in flight per configuration: "
          f"{PROVIDER_LIMIT} (ROP_TX_PROVIDER_LIMIT; default 64)", flush=True)
    with tempfile.TemporaryDirectory(prefix="rop-bench-trx-") as tmp:
        tmp_path = Path(tmp)
        redis_server = EmbeddedRedis(tmp_path / "redis", persist=False, port=free_port())
        redis_url = redis_server.ensure_running()
        database_url, drop = scratch_database(args.database_url, "rop_bench_trx")
        procs: dict[str, subprocess.Popen] = {}
        try:
            found = setup(database_url, redis_url, tmp_path / "instance", max(tenant_counts))
            app = found["app"]
            port = free_port()
            env = dict(os.environ, ROP_DATABASE_URL=database_url, ROP_REDIS_URL=redis_url,
                       ROP_INSTANCE_PATH=str(tmp_path / "instance"), ROP_LOG_LEVEL="WARNING",
                       ROP_LOG_FORMAT="console", ROP_PUBLIC_URL=f"http://127.0.0.1:{port}", **LIMITS)
            procs = start(env, port=port, workers=args.workers, provider_workers=args.provider_workers,
                          threads=args.threads, web_workers=args.web)
            wait_ready(port, timeout=120)
            post_load(port, found["token"], 4, "warmup", quota=200)
            wait_settled(app, found["tenant_id"])

            # 1. accept at each tenant count: with the pipeline working, then the pipeline paused
            # and the minimal baseline alternated in rounds; pgbench after
            hub: dict[int, dict] = {}
            alone: dict[int, dict] = {}
            minimal: dict = {}
            if not args.skip_accept:
                minimal_web, minimal_port = start_minimal(database_url, found, args.web)
                try:
                    for n in tenant_counts:
                        before = load_1m()
                        answers, _ = post_load(port, found["tokens"][:n], args.clients,
                                               f"accept{n}-{uuid.uuid4().hex[:6]}", seconds=args.seconds)
                        hub[n] = {**accept_figures(answers, args.seconds), "load_avg_1m": [before, load_1m()]}
                        figures[f"accept_t{n}"] = hub[n]
                        print(f"accept: {hub[n]['accepted_per_s']}/s with {args.clients} clients over {n} tenant(s), "
                              f"p50 {hub[n]['p50_ms']} ms, p99 {hub[n]['p99_ms']} ms, {hub[n]['errors']} errors; load "
                              f"{hub[n]['load_avg_1m'][0]} -> {hub[n]['load_avg_1m'][1]}", flush=True)
                        wait_settled(app, found["tenant_id"])
                        alone[n], minimal[n] = paused_rounds(procs, redis_server, port, minimal_web, minimal_port,
                                                             found["tokens"][:n], args)
                        wait_settled(app, found["tenant_id"])
                finally:
                    stop({"minimal": minimal_web})
                dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
                minimal["consistent"] = minimal_accept.consistent(dsn, FUNDS)
                first = hub[tenant_counts[0]]
                figures.update({"accept_errors": first["errors"], "accepted_per_s": first["accepted_per_s"],
                                "accept_p50_ms": first["p50_ms"], "accept_p99_ms": first["p99_ms"],
                                "accept_mean_ms": first["mean_ms"], "accept_tenants": tenant_counts[0]})
                before = load_1m()
                figures["pgbench_tps"] = round(pgbench_tps(args.database_url, args.clients, args.seconds), 1)
                figures["pgbench_load_avg_1m"] = [before, load_1m()]
                figures["accept_ratio"] = round(figures["accepted_per_s"] / figures["pgbench_tps"], 3)
                print(f"pgbench TPC-B-like, {args.clients} clients: {figures['pgbench_tps']} tps; ratio "
                      f"{figures['accept_ratio']} (goal >= {GOAL_ACCEPT_RATIO}); load "
                      f"{figures['pgbench_load_avg_1m'][0]} -> {figures['pgbench_load_avg_1m'][1]}", flush=True)
                for n in tenant_counts:
                    figures[f"accept_alone_t{n}"] = alone[n]
                    figures[f"minimal_accept_t{n}"] = minimal[n]
                    figures[f"hub_over_minimal_t{n}"] = ratio(hub[n]["accepted_per_s"], minimal[n]["accepted_per_s"])
                    figures[f"p99_over_minimal_p99_t{n}"] = ratio(hub[n]["p99_ms"], minimal[n]["p99_ms"])
                    figures[f"alone_over_minimal_t{n}"] = alone[n]["over_minimal"]
                    figures[f"alone_p99_over_minimal_p99_t{n}"] = alone[n]["p99_over_minimal_p99"]
                    print(f"{n} tenant(s): hub / minimal accepted/s {figures[f'hub_over_minimal_t{n}']} (goal >= "
                          f"{GOAL_HUB_OVER_MINIMAL}), p99 / minimal p99 {figures[f'p99_over_minimal_p99_t{n}']} (goal <= "
                          f"{GOAL_P99_OVER_MINIMAL_P99}); pipeline paused, median of {args.rounds} round(s): "
                          f"{figures[f'alone_over_minimal_t{n}']}, p99 {figures[f'alone_p99_over_minimal_p99_t{n}']}",
                          flush=True)
                base = minimal[tenant_counts[0]]
                figures.update({"minimal_accepted_per_s": base["accepted_per_s"], "minimal_accept_p50_ms": base["p50_ms"],
                                "minimal_accept_p99_ms": base["p99_ms"], "minimal_accept_errors": base["errors"],
                                "minimal_wallet_consistent": minimal["consistent"],
                                "hub_over_minimal": figures[f"hub_over_minimal_t{tenant_counts[0]}"],
                                "p99_over_minimal_p99": figures[f"p99_over_minimal_p99_t{tenant_counts[0]}"]})

            # 2. end to end at each latency
            for latency in latencies:
                cpu_before = process_cpu(procs)
                result = end_to_end(app, port, found, args.clients, args.count, latency)
                result["cpu_ms_per_purchase"] = {name: round((spent - cpu_before.get(name, 0.0)) * 1000 / args.count, 2)
                                                 for name, spent in process_cpu(procs).items()}
                print(f"  CPU per purchase (ms, by process): {result['cpu_ms_per_purchase']}", flush=True)
                figures[f"e2e_{latency}ms"] = result
                print(f"end to end at {latency} ms: {result['count']} in {result['seconds']} s = "
                      f"{result['completed_per_s']} completed/s ({result['succeeded']} succeeded)", flush=True)
                wait_settled(app, found["tenant_id"])
            figures["wallet_consistent"] = check_wallet(app, found["tenant_id"], found["wallet_id"])
            figures["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
            at_200 = figures.get("e2e_200ms", {}).get("completed_per_s")
            figures["goal_accept_met"] = figures.get("accept_ratio", 0) >= GOAL_ACCEPT_RATIO
            figures["goal_completed_met"] = at_200 is not None and at_200 >= GOAL_COMPLETED_AT_200MS
            figures["goal_hub_over_minimal_met"] = (figures.get("hub_over_minimal") or 0) >= GOAL_HUB_OVER_MINIMAL
            figures["goal_p99_over_minimal_met"] = (figures.get("p99_over_minimal_p99") is not None
                                                    and figures["p99_over_minimal_p99"] <= GOAL_P99_OVER_MINIMAL_P99)
            met = {True: "met", False: "NOT met"}
            print(f"wallet consistent: {figures['wallet_consistent']} (minimal: "
                  f"{figures.get('minimal_wallet_consistent', 'not run')}); goals: accept ratio {met[figures['goal_accept_met']]}, "
                  f"completed/s at 200 ms {met[figures['goal_completed_met']]}"
                  f"{'' if latencies else ' (not run)'}, hub/minimal {met[figures['goal_hub_over_minimal_met']]}, "
                  f"p99/minimal p99 {met[figures['goal_p99_over_minimal_met']]}", flush=True)
            app.extensions["rop"].close()
        finally:
            stop(procs)
            redis_server.stop()
            drop()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
