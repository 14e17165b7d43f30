"""GET /v1/products requests/s against /healthz requests/s, on the same gunicorn server.

A 1,000-product catalog (sandbox offers, synced through the products service), a tenant
with a platform price rule and rules of its own, an authenticated client with a bearer
token. The hub is served by ``rop web`` (gunicorn, gthread workers) in its own process
group; the load comes from ``wrk`` (apt package ``wrk``) in another process, or, when wrk
is missing, from Python client processes with keep-alive connections. Each endpoint is
measured for ``--seconds`` after a warm-up, in ``--rounds`` rounds (median reported); ``/v1/products`` is measured twice: one page
over and over, and 20 different pages (filters and cursors) in turn; ``/v1/tenant`` with the
same token is measured too, as the floor that authentication alone sets.
Goal: products/healthz >= 0.60. Prints figures as it goes and, last, one JSON line.

    .venv/bin/python bench/products.py [--seconds 10] [--workers 2] [--threads 4] [--connections 32]
                                       [--rounds 3] [--postgres [ADMIN_URL]]

With ``--postgres`` a scratch PostgreSQL database is made and dropped again; otherwise
ROP_DATABASE_URL when set (a scratch database: the bench migrates and empties it), else a
temporary SQLite file. Its own embedded Redis.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch import scratch_database
from sqlalchemy import text

from hub.app import create_app
from hub.auth import issue_access_token
from hub.config import Config
from hub.context import CallContext
from hub.db import unit_of_work
from hub.embedded_redis import EmbeddedRedis, free_port
from hub.migrate import load_models, upgrade
from hub.providers.contract import CatalogItem

GOAL_RATIO = 0.60
CATALOG_SIZE = 1000


def _empty(engine) -> None:
    metadata = load_models()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
                              + " RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


def _catalog() -> list[CatalogItem]:
    """1,000 products over every category: pulsa and data of six operators, PLN, e-wallets, games, bills."""
    items: list[CatalogItem] = []
    brands = ("telkomsel", "indosat", "xl", "axis", "tri", "smartfren")
    n = 0
    while len(items) < CATALOG_SIZE:
        n += 1
        for brand in brands:
            value = 1_000 * n
            items.append(CatalogItem(f"{brand[:3].upper()}{n}K", f"Pulsa {brand.title()} {value:,}", "pulsa",
                                     brand, value + 150))
            items.append(CatalogItem(f"{brand[:3].upper()}D{n}", f"Data {brand.title()} {n} GB", "data",
                                     brand, 5_000 + 3_000 * n))
        items.append(CatalogItem(f"PLN{n}K", f"Token PLN {20_000 * n:,}", "pln", "pln", 20_000 * n + 500))
        for wallet in ("gopay", "ovo", "dana"):
            items.append(CatalogItem(f"{wallet.upper()}{n}K", f"{wallet.upper()} {10_000 * n:,}", "ewallet",
                                     wallet, 10_000 * n + 1_000))
        items.append(CatalogItem(f"ML{n * 10}", f"Mobile Legends {n * 10} Diamonds", "game", "mobile legends",
                                 2_500 * n))
        items.append(CatalogItem(f"BILL{n}", f"Biller {n}", "bill", f"biller {n}", 2_500, postpaid=True))
    return items[:CATALOG_SIZE]


def seed(app) -> dict[str, str]:
    """The catalog, the price rules, a tenant and its client; returns the bearer header."""
    from hub.products import rules
    from hub.products.sync import sync_config
    from hub.providers import service as providers
    from hub.tenancy import service as tenancy

    state = app.extensions["rop"]
    ctx = CallContext.system(actor="bench")
    with app.app_context():
        with unit_of_work(state.db) as uow:
            tenancy.ensure_service_clients(uow)
            tenant = tenancy.create_tenant(ctx, uow, "Bench Tenant")
            client, _secret = tenancy.create_client(ctx, uow, tenant.id, rate_limit_per_minute=10**9)
            config_id = providers.add_config(uow, "sandbox", "Sandbox").id
            uow.commit()
        report = sync_config(ctx, lambda: unit_of_work(state.db), config_id, items=_catalog())
        assert report["status"] == "succeeded" and report["created"] == CATALOG_SIZE, report
        with unit_of_work(state.db) as uow:
            rules.set_rule(ctx, uow, tenant_id=None, target="all", kind="markup_percent", value=200)
            rules.set_rule(ctx, uow, tenant_id=tenant.id, target="category:pulsa", kind="markup_fixed", value=300)
            rules.set_rule(ctx, uow, tenant_id=tenant.id, target="product:TEL10K", kind="fixed_price", value=10_900)
            uow.commit()
    token = issue_access_token(state.config.secret_key, client.id, tenant.id, client.scope_set, 24 * 3600)
    return {"Authorization": f"Bearer {token}"}


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _wait_ready(port: int, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if _get(port, "/healthz", {})[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the hub did not answer /healthz within 60 s")


PAGES = ["/v1/products"] + [f"/v1/products?category={c}" for c in ("pulsa", "data", "pln", "ewallet", "game", "bill")] \
    + [f"/v1/products?brand={b}&limit=20" for b in ("telkomsel", "indosat", "xl", "axis", "tri", "smartfren")] \
    + [f"/v1/products?q={q}" for q in ("pulsa", "data", "legends", "token")] + ["/v1/products?type=postpaid",
                                                                                 "/v1/products?limit=200",
                                                                                 "/v1/products?active=true"]


def _wrk(url_base: str, paths: list[str], headers: dict[str, str], seconds: int, connections: int,
         threads: int) -> dict[str, float]:
    script = None
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if len(paths) > 1:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write("paths = {" + ", ".join(json.dumps(p) for p in paths) + "}\n"
                         "n = 0\nrequest = function()\n  n = n + 1\n"
                         "  return wrk.format(nil, paths[(n % #paths) + 1])\nend\n")
        args += ["-s", script.name]
    args.append(url_base + paths[0])
    try:
        out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    finally:
        if script:
            os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)

    def ms(label: str) -> float:
        match = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not match:
            return float("nan")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    return {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0, "p50_ms": ms("50"), "p99_ms": ms("99"),
            "socket_errors": errors.group(0) if errors else ""}


def _client_proc(port: int, paths: list[str], headers: dict[str, str], until: float, results) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    done = bad = 0
    i = 0
    while time.monotonic() < until:
        conn.request("GET", paths[i % len(paths)], headers=headers)
        response = conn.getresponse()
        response.read()
        done += 1
        bad += response.status >= 300
        i += 1
    results.put((done, bad))


def _python_load(port: int, paths: list[str], headers: dict[str, str], seconds: int, connections: int,
                 threads: int) -> dict[str, float]:
    results: multiprocessing.Queue = multiprocessing.Queue()
    start = time.monotonic()
    until = start + seconds
    procs = [multiprocessing.Process(target=_client_proc, args=(port, paths, headers, until, results))
             for _ in range(connections)]
    for p in procs:
        p.start()
    totals = [results.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    return {"rps": sum(t[0] for t in totals) / elapsed, "non_2xx": sum(t[1] for t in totals),
            "p50_ms": float("nan"), "p99_ms": float("nan"), "socket_errors": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", metavar="ADMIN_URL", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="run on a scratch PostgreSQL database made (and dropped) through ADMIN_URL")
    args = parser.parse_args()
    if args.postgres:
        database_url, drop = scratch_database(args.postgres, "rop_bench_products")
        try:
            run(args, database_url)
        finally:
            drop()
    else:
        run(args, os.environ.get("ROP_DATABASE_URL"))


def run(args: argparse.Namespace, database_url: str | None) -> None:
    """Seed, serve, measure, print."""

    tmp = Path(tempfile.mkdtemp(prefix="rop-bench-products-"))
    redis = EmbeddedRedis(tmp / "redis", persist=False, port=free_port())
    redis_url = redis.ensure_running()
    database_url = database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    server = None
    try:
        upgrade(database_url)
        app = create_app(Config.from_env({}, instance_path=tmp / "instance", database_url=database_url,
                                         redis_url=redis_url, log_format="console", log_level="ERROR"))
        _empty(app.extensions["rop"].db.engine)
        app.extensions["rop"].redis.flushdb()
        started = time.perf_counter()
        headers = seed(app)
        print(f"bench/products.py: {backend}, {CATALOG_SIZE} products seeded through a catalog sync in "
              f"{time.perf_counter() - started:.1f} s; gunicorn {args.workers} workers x {args.threads} threads, "
              f"{args.connections} connections, {args.seconds} s per measurement, {os.cpu_count()} CPUs", flush=True)
        app.extensions["rop"].close()

        port = free_port()
        env = {**os.environ, "ROP_DATABASE_URL": database_url, "ROP_REDIS_URL": redis_url,
               "ROP_INSTANCE_PATH": str(tmp / "instance"), "ROP_LOG_LEVEL": "WARNING",
               "ROP_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        server = subprocess.Popen([sys.executable, "-m", "hub.cli", "web", "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", str(args.workers), "--threads", str(args.threads)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        _wait_ready(port)
        status, body = _get(port, "/v1/products/TEL10K", headers)
        product = json.loads(body)
        assert status == 200 and product["price"] == 10_900 and "cost" not in product, (status, body)
        status, body = _get(port, "/v1/products?limit=500", headers)
        assert status == 200 and len(json.loads(body)["items"]) == 500, status

        use_wrk = shutil.which("wrk") is not None
        load = _wrk if use_wrk else _python_load
        target = f"http://127.0.0.1:{port}" if use_wrk else port
        load_threads = 2
        print(f"load generator: {'wrk' if use_wrk else 'python client processes'}", flush=True)
        figures: dict[str, object] = {"bench": "products", "database": backend, "catalog_size": CATALOG_SIZE,
                                      "workers": args.workers, "threads": args.threads,
                                      "connections": args.connections, "seconds": args.seconds,
                                      "load_generator": "wrk" if use_wrk else "python", "goal_ratio": GOAL_RATIO}
        # Rounds, each measuring the three in turn: other load on the machine then weighs on
        # all three alike, and the median of the rounds' ratios is reported.
        # GET /v1/tenant (same bearer token, one indexed row) shows what authentication alone
        # costs: the floor of any authenticated endpoint on this server.
        endpoints = (("healthz", ["/healthz"], {}), ("products", ["/v1/products"], headers),
                     ("products_20_pages", PAGES, headers), ("tenant", ["/v1/tenant"], headers))
        for _name, paths, hdrs in endpoints:  # warm-up: imports, pools, the cache
            load(target, paths, hdrs, 2, args.connections, load_threads)
        runs: dict[str, list[dict]] = {name: [] for name, _p, _h in endpoints}
        for round_no in range(1, args.rounds + 1):
            for name, paths, hdrs in endpoints:
                result = load(target, paths, hdrs, args.seconds, args.connections, load_threads)
                runs[name].append(result)
                print(f"round {round_no} {name:<18} {result['rps']:8.0f} requests/s  p50 {result['p50_ms']:.1f} ms  "
                      f"p99 {result['p99_ms']:.1f} ms  non-2xx {result['non_2xx']} {result['socket_errors']}",
                      flush=True)
            ratio = runs["products"][-1]["rps"] / runs["healthz"][-1]["rps"]
            print(f"round {round_no} ratio products/healthz {ratio:.2f} "
                  f"(20 pages {runs['products_20_pages'][-1]['rps'] / runs['healthz'][-1]['rps']:.2f})", flush=True)
        for name, results in runs.items():
            figures[f"{name}_rps"] = round(statistics.median(r["rps"] for r in results), 1)
            figures[f"{name}_p99_ms"] = statistics.median(r["p99_ms"] for r in results)
            figures[f"{name}_non_2xx"] = sum(r["non_2xx"] for r in results)
        ratios = [p["rps"] / h["rps"] for p, h in zip(runs["products"], runs["healthz"])]
        ratios_pages = [p["rps"] / h["rps"] for p, h in zip(runs["products_20_pages"], runs["healthz"])]
        ratio, ratio_pages = statistics.median(ratios), statistics.median(ratios_pages)
        ratio_tenant = statistics.median(t["rps"] / h["rps"] for t, h in zip(runs["tenant"], runs["healthz"]))
        figures.update(rounds=args.rounds, ratio=round(ratio, 3), ratio_20_pages=round(ratio_pages, 3),
                       ratio_authenticated_floor=round(ratio_tenant, 3), goal_met=ratio >= GOAL_RATIO)
        print(f"healthz {figures['healthz_rps']:.0f} requests/s, products {figures['products_rps']:.0f} requests/s "
              f"(median of {args.rounds} rounds); ratio products/healthz {ratio:.2f} (20 pages: {ratio_pages:.2f}); "
              f"goal >= {GOAL_RATIO:.2f}: {'met' if figures['goal_met'] else 'NOT met'}; an authenticated "
              f"one-row endpoint (/v1/tenant) reaches {ratio_tenant:.2f} of /healthz", flush=True)
        print(json.dumps(figures), flush=True)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
