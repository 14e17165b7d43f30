"""The accept function's own cost on the server: PostgreSQL CPU per call of each version.

The hub accepts a purchase in one call of a PL/pgSQL function (hub/transactions/accept.py):
``rop_accept_v1(json)`` (migration 0026) and ``rop_accept_v2(jsonb)`` (0027, the one the code
calls) write the same rows from the same argument. This bench takes real arguments (it
accepts ``--warm`` purchases through the hub's API on a scratch database, in this process,
and keeps the last argument sent), then, for each version in turn, calls the function
``--calls`` times on one connection in autocommit, each time with fresh ids and
``ref_id`` (new purchases, not replays), and reads the server process's CPU time before and
after (``/proc/<backend pid>/stat``: the bench must run on the database's machine).

    .venv/bin/python bench/accept_function.py [--calls 2000] [--rounds 2]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Prints CPU and wall time per call for each version and round; the last line is one JSON
object (``v1_cpu_ms``, ``v2_cpu_ms``: the best round of each; ``v2_over_v1``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

from procfile import ordinary_number
from scratch import scratch_database
from sqlalchemy.engine import make_url
from transactions import setup

VERSIONS = {"v1": "SELECT rop_accept_v1(%s::json)", "v2": "SELECT rop_accept_v2(%s::jsonb)"}
_IDS = re.compile(r'"((?:trx|hld|jnl|msg|dlv)_[0-9a-f]+)"')


def backend_cpu(conn) -> float:
    """Seconds of CPU the connection's server process used so far."""
    fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def arguments(template: str, prefix: str, count: int) -> list[str]:
    """``count`` copies of ``template`` with fresh ids and ``ref_id``s (so many new purchases)."""
    ids = set(_IDS.findall(template))
    ref_id = json.loads(template)["transaction"]["ref_id"]
    out = []
    for n in range(count):
        argument = template
        for old in ids:
            argument = argument.replace(old, f"{old[:4]}{uuid.uuid4().hex[:24]}")
        out.append(argument.replace(f'"{ref_id}"', f'"{prefix}-{n}"'))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    import psycopg

    from hub.embedded_redis import EmbeddedRedis, free_port
    from hub.transactions import accept

    sent: list[str] = []
    call = accept.call_in_autocommit

    def keep(engine, sql, params):  # the argument of each accept, as the hub sends it
        sent.append(params[0])
        return call(engine, sql, params)

    accept.call_in_autocommit = keep
    figures: dict = {"calls": args.calls, "load_avg_1m_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="rop-bench-fn-") as tmp:
        redis_server = EmbeddedRedis(Path(tmp) / "redis", persist=False, port=free_port())
        redis_url = redis_server.ensure_running()
        database_url, drop = scratch_database(args.database_url, "rop_bench_fn")
        try:
            found = setup(database_url, redis_url, Path(tmp) / "instance", 1)
            client = found["app"].test_client()
            headers = {"Authorization": f"Bearer {found['token']}"}
            for n in range(args.warm):
                answer = client.post("/v1/transactions", headers=headers,
                                     json={"ref_id": f"warm-{n}", "product_code": "TEL10", "customer_no": ordinary_number(n)})
                if answer.status_code != 202:
                    raise SystemExit(f"warm-up purchase answered {answer.status_code}: {answer.get_data(as_text=True)}")
            if not sent:
                raise SystemExit("no purchase was accepted through the function's autocommit call")
            template = sent[-1]
            figures["argument_bytes"] = len(template)
            print(f"bench/accept_function.py: {args.calls} calls a round, argument {len(template):,} bytes, "
                  f"load {figures['load_avg_1m_before']}", flush=True)
            dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
            best: dict[str, float] = {}
            for round_ in range(args.rounds):
                for version, statement in VERSIONS.items():
                    batch = arguments(template, f"{version}-{round_}-{uuid.uuid4().hex[:6]}", args.calls)
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        for argument in batch[:20]:  # the function's plans, psycopg's prepared statement
                            conn.execute(statement, (argument,)).fetchone()
                        cpu, wall = backend_cpu(conn), time.perf_counter()
                        for argument in batch[20:]:
                            created = conn.execute(statement, (argument,)).fetchone()[0]["created"]
                            assert created, "a call answered a replay: the ids were not fresh"
                        cpu = 1000 * (backend_cpu(conn) - cpu) / (len(batch) - 20)
                        wall = 1000 * (time.perf_counter() - wall) / (len(batch) - 20)
                    best[version] = min(best.get(version, cpu), cpu)
                    print(f"round {round_ + 1}, {version}: {cpu:.3f} ms of server CPU a call, {wall:.3f} ms wall",
                          flush=True)
            found["app"].extensions["rop"].close()
        finally:
            accept.call_in_autocommit = call
            redis_server.stop()
            drop()
    figures.update({"v1_cpu_ms": round(best["v1"], 3), "v2_cpu_ms": round(best["v2"], 3),
                    "v2_over_v1": round(best["v2"] / best["v1"], 3),
                    "load_avg_1m_after": round(os.getloadavg()[0], 2)})
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
