"""Throughput of the event backbone against raw RQ, with the same worker class.

Bus: N events, each published in its own committed transaction (outbox row + event-store
row, relayed to RQ after commit), consumed by a no-op subscriber that records the
processed-message row. Raw: N ``queue.enqueue`` calls of a no-op job. Both with 1 and 2
worker processes started before the clock starts. Prints figures as it goes and, last,
one JSON line.

    .venv/bin/python bench/bus.py [--messages N] [--fork-baseline/--no-fork-baseline]

Uses ROP_DATABASE_URL when set (a scratch database: the bench migrates and empties it),
otherwise a temporary SQLite file, and its own embedded Redis.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rq import Queue, Worker
from sqlalchemy import func, select, text

from hub.app import create_app
from hub.bus import publish
from hub.bus.models import ProcessedMessage
from hub.bus.testing import Ping, register
from hub.config import Config
from hub.context import CallContext
from hub.db import unit_of_work
from hub.embedded_redis import EmbeddedRedis, free_port
from hub.migrate import load_models, upgrade

WORKER_SCRIPT = """
import sys
from hub.app import create_app
from hub.bus.testing import register
from hub.worker import make_worker, HubWorker
app = create_app()
register(app)
if sys.argv[1] == "fork":
    from rq import Worker
    class ForkingHubWorker(Worker):
        def perform_job(self, *a, **k):
            with app.app_context():
                return super().perform_job(*a, **k)
    state = app.extensions["rop"]
    from hub.queues import queue
    w = ForkingHubWorker([queue(n, state.redis) for n in ("events", "default")], connection=state.redis)
else:
    w = make_worker(app, ["events", "default"])
w.work(logging_level="WARNING")
"""


def _start_workers(env: dict, count: int, kind: str, redis) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, kind], env=env) for _ in range(count)]
    deadline = time.monotonic() + 60
    while len(Worker.all(connection=redis)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        time.sleep(0.05)
    return procs


def _stop(procs: list[subprocess.Popen], redis) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    deadline = time.monotonic() + 10
    while Worker.all(connection=redis) and time.monotonic() < deadline:
        time.sleep(0.05)


def _empty(app) -> None:
    metadata = load_models()
    with app.extensions["rop"].db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t.name}"' for t in metadata.sorted_tables) + " CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    app.extensions["rop"].redis.flushdb()


def _wait(predicate, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the workers")
        time.sleep(0.02)


def bench_bus(app, env, n: int, workers: int) -> float:
    _empty(app)
    redis = app.extensions["rop"].redis
    procs = _start_workers(env, workers, "simple", redis)
    ctx = CallContext(tenant_id="ten_bench", client_id="cli_bench", scopes=frozenset({"*"}))
    db = app.extensions["rop"].db

    def processed() -> int:
        with unit_of_work(db, readonly=True) as uow:
            return uow.session.execute(select(func.count()).select_from(ProcessedMessage)).scalar_one()

    try:
        started = time.perf_counter()
        with app.app_context():
            for i in range(n):
                with unit_of_work(db) as uow:
                    publish(ctx, uow, Ping(n=i, mode="noop"))
                    uow.commit()
        _wait(lambda: processed() >= n)
        return n / (time.perf_counter() - started)
    finally:
        _stop(procs, redis)


def bench_raw(app, env, n: int, workers: int, kind: str = "simple") -> float:
    _empty(app)
    redis = app.extensions["rop"].redis
    procs = _start_workers(env, workers, kind, redis)
    queue = Queue("default", connection=redis)
    try:
        started = time.perf_counter()
        for _ in range(n):
            queue.enqueue("hub.bus.testing.raw_noop_job", result_ttl=0)
        _wait(lambda: int(redis.get("bus_bench:raw") or 0) >= n)
        return n / (time.perf_counter() - started)
    finally:
        _stop(procs, redis)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--no-fork-baseline", action="store_true", help="skip RQ's forking Worker figure")
    args = parser.parse_args()
    n = args.messages

    with tempfile.TemporaryDirectory(prefix="rop-bench-bus-") as tmp:
        tmp_path = Path(tmp)
        redis_server = EmbeddedRedis(tmp_path / "redis", persist=False, port=free_port())
        redis_url = redis_server.ensure_running()
        database_url = os.environ.get("ROP_DATABASE_URL") or f"sqlite:///{tmp_path / 'bench.sqlite3'}"
        try:
            config = Config.from_env({}, instance_path=tmp_path / "instance", database_url=database_url,
                                     redis_url=redis_url, log_format="console", log_level="ERROR")
            upgrade(config.database_url)
            app = create_app(config)
            register(app)
            env = dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=redis_url,
                       ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="ERROR")
            print(f"bench/bus.py: {n} messages, database {config.database_kind}, worker class SimpleWorker",
                  flush=True)
            figures: dict[str, object] = {"messages": n, "database": config.database_kind,
                                          "worker_class": "SimpleWorker", "goal_ratio": 0.5}
            for workers in (1, 2):
                raw = bench_raw(app, env, n, workers)
                print(f"raw RQ enqueue -> no-op job, {workers} worker(s): {raw:.0f} msg/s", flush=True)
                bus = bench_bus(app, env, n, workers)
                print(f"bus commit -> outbox -> RQ -> no-op handler, {workers} worker(s): {bus:.0f} msg/s", flush=True)
                ratio = bus / raw
                print(f"ratio bus/raw, {workers} worker(s): {ratio:.2f} (goal >= 0.50)", flush=True)
                figures.update({f"raw_{workers}w_per_s": round(raw, 1), f"bus_{workers}w_per_s": round(bus, 1),
                                f"ratio_{workers}w": round(ratio, 3)})
            if not args.no_fork_baseline:
                fork = bench_raw(app, env, max(n // 4, 50), 1, kind="fork")
                print(f"raw RQ with the forking Worker, 1 worker: {fork:.0f} msg/s", flush=True)
                figures["raw_fork_1w_per_s"] = round(fork, 1)
            figures["goal_met"] = all(figures[f"ratio_{w}w"] >= 0.5 for w in (1, 2))
            app.extensions["rop"].close()
        finally:
            redis_server.stop()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
