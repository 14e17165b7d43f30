"""Provider calls in flight through the thread worker, against a slow HTTP server.

N ``SlowCall`` commands (provider queue, ``own_uow`` handler: processed-message check, one
HTTP GET, processed-message record) are committed through the outbox first; then worker
processes (``make_worker(app, ["provider"], threads=T)``, what ``rop worker --threads T``
runs) start and drain them against a real HTTP server in this process that answers every
request after ``--delay`` seconds and samples how many requests it is serving at once.

Prints the figures as it goes and, last, one JSON line. Goal: 100 calls in flight with one
process of 128 threads.

    .venv/bin/python bench/inflight.py [--calls 2000] [--delay 0.2] [--threads 128] [--processes 1]

Uses ROP_DATABASE_URL when set (a scratch database: the bench migrates and empties it),
otherwise a temporary SQLite file, and its own embedded Redis.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bus import _empty, _stop  # the sibling bench (bench/bus.py): empty the database, stop workers

from hub.app import create_app
from hub.bus import publish
from hub.bus.testing import SlowCall, SlowServer, register_slow_call
from hub.config import Config
from hub.context import CallContext
from hub.db import unit_of_work
from hub.embedded_redis import EmbeddedRedis, free_port
from hub.migrate import upgrade

WORKER_SCRIPT = """
import sys
from hub.app import create_app
from hub.bus.testing import register_slow_call
from hub.worker import make_worker
app = create_app()
register_slow_call(app)
make_worker(app, ["provider"], threads=int(sys.argv[1])).work(logging_level="WARNING")
"""


def _sample(server: SlowServer, stop: threading.Event, samples: list, every: float = 0.01) -> None:
    while not stop.wait(every):
        samples.append((time.monotonic(), server.in_flight, server.served))


def run(app, env: dict, calls: int, delay: float, threads: int, processes: int) -> dict:
    _empty(app)
    redis = app.extensions["rop"].redis
    server = SlowServer().start()
    ctx = CallContext(tenant_id="ten_bench", client_id="cli_bench", scopes=frozenset({"*"}))
    url = f"{server.url}?delay={delay}"
    with app.app_context():
        for start in range(0, calls, 500):
            with unit_of_work(app.extensions["rop"].db) as uow:
                for _ in range(start, min(calls, start + 500)):
                    publish(ctx, uow, SlowCall(url=url))
                uow.commit()
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(server, stop, samples), daemon=True)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(threads)], env=env) for _ in range(processes)]
    cpu_before = None
    try:
        sampler.start()
        deadline = time.monotonic() + 600
        while server.served < calls:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the workers stopped or timed out ({server.served}/{calls} served)")
            if cpu_before is None and server.served == 0 and server.in_flight:
                cpu_before = sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs)
            time.sleep(0.05)
        cpu_after = sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs)
    finally:
        stop.set()
        sampler.join()
        _stop(procs, redis)
        server.stop()
    # Steady state: between 10 % and 90 % of the calls served (no ramp-up, no tail).
    steady = [(t, f, s) for t, f, s in samples if calls * 0.1 <= s <= calls * 0.9]
    t0, _, s0 = steady[0]
    t1, _, s1 = steady[-1]
    return {
        "calls": calls, "delay_s": delay, "threads": threads, "processes": processes,
        "max_in_flight": server.max_in_flight,
        "mean_in_flight": round(statistics.fmean(f for _, f, _ in steady), 1),
        "completed_per_s": round((s1 - s0) / (t1 - t0), 1),
        "worker_cpu_ms_per_call": round((cpu_after - (cpu_before or 0)) / calls * 1000, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per call at the server")
    parser.add_argument("--threads", type=int, default=128)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rop-bench-inflight-") as tmp:
        tmp_path = Path(tmp)
        redis_server = EmbeddedRedis(tmp_path / "redis", persist=False, port=free_port())
        redis_url = redis_server.ensure_running()
        database_url = os.environ.get("ROP_DATABASE_URL") or f"sqlite:///{tmp_path / 'bench.sqlite3'}"
        try:
            config = Config.from_env({}, instance_path=tmp_path / "instance", database_url=database_url,
                                     redis_url=redis_url, log_format="console", log_level="ERROR")
            upgrade(config.database_url)
            app = create_app(config)
            register_slow_call(app)
            env = dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=redis_url,
                       ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="ERROR")
            print(f"bench/inflight.py: {args.calls} calls of {args.delay} s, {args.processes} process(es) x "
                  f"{args.threads} threads, database {config.database_kind}", flush=True)
            figures = run(app, env, args.calls, args.delay, args.threads, args.processes)
            figures["database"] = config.database_kind
            figures["goal_in_flight"] = 100
            figures["goal_met"] = figures["mean_in_flight"] >= 100
            print(f"max in flight {figures['max_in_flight']}, mean in flight (steady) {figures['mean_in_flight']}, "
                  f"completed {figures['completed_per_s']} calls/s, worker CPU "
                  f"{figures['worker_cpu_ms_per_call']} ms per call, load {figures['load_avg_1m']}", flush=True)
            app.extensions["rop"].close()
        finally:
            redis_server.stop()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
