"""schemathesis over the hub's whole OpenAPI, as a funded tenant: zero server errors, every
response as the spec describes it.

What runs: a fresh PostgreSQL database (created on ``--database-url``'s server and dropped
afterwards; ``--sqlite`` for a SQLite file), the hub's embedded Redis on a free port, the
Procfile's web process (gunicorn) and one worker (so that transactions and bulk jobs move
while the run goes on). A tenant is made with the sandbox catalog and a funded wallet; its
client gets a token from ``POST /oauth/token`` like any client; then schemathesis runs every
operation with the checks ``not_a_server_error`` and ``response_schema_conformance``, with a
fixed seed and number of cases per operation, so that a run is reproducible.

    .venv/bin/python bench/fuzz_api.py [--max-examples 150] [--seed 2124] [--sqlite]

``make fuzz`` runs it (CI runs it on PostgreSQL after the suite). Exit status: schemathesis's
(0: no failure), or 1 when any of the hub's processes logged a traceback meanwhile (a worker
crashing on what a request left behind). JUnit reports go to ``--report-dir`` (default:
test-artifacts/fuzz).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from procfile import start, stop, wait_ready
from scratch import scratch_database

ROOT = Path(__file__).resolve().parent.parent
CHECKS = "not_a_server_error,response_schema_conformance"
FUNDS = 10**12
#: the bench's funds are one top-up above the hub's default limit per top-up: it raises the
#: limit through the hub's own setting, for the app it seeds with and the hub it starts
LIMITS = {"ROP_AMOUNT_LIMIT_TOPUP": str(FUNDS)}
#: the run CI makes: about 5,000 cases in two minutes on the 2-core reference machine
MAX_EXAMPLES = 150
SEED = 2124


def setup(database_url: str, redis_url: str, instance: Path) -> dict:
    """Migrate, seed the sandbox catalog, make a funded tenant with a client; its id and secret."""
    from hub.app import create_app
    from hub.config import Config
    from hub.context import CallContext
    from hub.db import unit_of_work
    from hub.migrate import upgrade
    from hub.products.testing import seed_sandbox_catalog
    from hub.tenancy import service as tenancy
    from hub.wallets import accounts as wallets

    upgrade(database_url)
    config = Config.from_env(LIMITS, instance_path=instance, database_url=database_url, redis_url=redis_url,
                             log_format="console", log_level="ERROR")
    app = create_app(config)
    state = app.extensions["rop"]
    try:
        seed_sandbox_catalog(app, settings={"latency_ms": 0, "callback_delay": 0.2})
        with app.app_context(), unit_of_work(state.db) as uow:
            system = CallContext.system(actor="fuzz")
            tenant = tenancy.create_tenant(system, uow, f"Fuzz {uuid.uuid4().hex[:6]}")
            client, secret = tenancy.create_client(system, uow, tenant.id, rate_limit_per_minute=1_000_000)
            wallet = wallets.get_main_wallet(CallContext.system(actor="fuzz", tenant_id=tenant.id), uow)
            wallets.topup(CallContext.system(actor="fuzz", tenant_id=tenant.id), uow, wallet.id, FUNDS, "fuzz-funds")
            uow.commit()
            return {"client_id": client.id, "secret": secret, "wallet_id": wallet.id}
    finally:
        state.close()


def _tracebacks(log: str) -> list[str]:
    """The tracebacks the hub's processes logged (a worker that crashed on what a request left
    behind answered no request with a 500, yet failed all the same)."""
    found, current = [], None
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line and not line[0].isspace():  # the exception's line ends it
                found.append("\n".join(current[-12:]))
                current = None
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", "-n", type=int, default=MAX_EXAMPLES, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=1,
                        help="schemathesis's concurrent workers (1: the operations run in the same order every time)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--report-dir", default=str(ROOT / "test-artifacts" / "fuzz"))
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    args = parser.parse_args()

    from hub.embedded_redis import EmbeddedRedis, free_port

    with tempfile.TemporaryDirectory(prefix="rop-fuzz-") as tmp:
        tmp_path = Path(tmp)
        redis_server = EmbeddedRedis(tmp_path / "redis", persist=False, port=free_port())
        redis_url = redis_server.ensure_running()
        if args.sqlite:
            database_url, drop = f"sqlite:///{tmp_path / 'fuzz.sqlite3'}", (lambda: None)
        else:
            database_url, drop = scratch_database(args.database_url, "rop_fuzz")
        procs: dict[str, subprocess.Popen] = {}
        try:
            found = setup(database_url, redis_url, tmp_path / "instance")
            port = free_port()
            env = dict(os.environ, ROP_DATABASE_URL=database_url, ROP_REDIS_URL=redis_url,
                       ROP_INSTANCE_PATH=str(tmp_path / "instance"), ROP_LOG_LEVEL="ERROR",
                       ROP_LOG_FORMAT="console", ROP_ACCESS_TOKEN_TTL="7200",
                       ROP_PUBLIC_URL=f"http://127.0.0.1:{port}", **LIMITS)
            log_path = tmp_path / "hub.log"
            with log_path.open("wb") as log:  # the children hold their own descriptors of it
                procs = start(env, port=port, workers=1, provider_workers=1, threads=8, output=log)
            wait_ready(port)
            base = f"http://127.0.0.1:{port}"
            token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(found["client_id"], found["secret"]), timeout=30).raise_for_status().json()
            st = str(Path(sys.executable).with_name("st"))
            command = [st, "run", f"{base}/openapi.json", "--checks", CHECKS, "--phases", args.phases,
                       "--max-examples", str(args.max_examples), "--seed", str(args.seed),
                       "--generation-database", "none",
                       "--workers", str(args.workers), "--request-timeout", "30", "--no-color",
                       "--suppress-health-check", "all", "--continue-on-failure",
                       "--report", "junit", "--report-dir", args.report_dir,
                       "--header", f"Authorization: Bearer {token['access_token']}"]
            print("bench/fuzz_api.py:", " ".join(c if not c.startswith("Authorization") else "Authorization: ***"
                                                 for c in command[1:]), flush=True)
            started = time.monotonic()
            code = subprocess.call(command, env=env, cwd=tmp)  # schemathesis's own files go to the scratch folder
            print(f"bench/fuzz_api.py: schemathesis exited {code} after {time.monotonic() - started:.0f} s", flush=True)
            stop(procs)
            crashes = _tracebacks(log_path.read_text(errors="replace"))
            for crash in crashes:
                print(crash, flush=True)
            print(f"bench/fuzz_api.py: {len(crashes)} traceback(s) in the hub's processes' logs", flush=True)
            return code or (1 if crashes else 0)
        finally:
            stop(procs)
            drop()
            redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
