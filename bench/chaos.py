"""The fault suite: a running hub under a stream of purchases, one fault after another.

What runs: ``rop up`` (web, relay, worker, provider worker, scheduler, the embedded Redis server)
on a tmp instance folder; PostgreSQL in a private cluster this script makes with
``initdb``/``pg_ctl`` where the binaries are (``/usr/lib/postgresql/*/bin``), else the
database ``--database-url`` names (or a SQLite file), the PostgreSQL restart then skipped;
and a provider that remembers (``bench/provider_sim.py``: the Digiflazz protocol, its
records in a SQLite file of its own), reached through the Digiflazz plugin.

A tenant's client posts purchases at ``--rate`` per second over every test number of the
simulator (success, failure, rejection, pending then a webhook either way, a lost answer
either way, success then a refund, a request lost on the way), each retried with the same ``ref_id`` until the hub
answers. Per fault: ``--warmup`` seconds of stream, the fault, the stream until the hub is
back plus ``--after`` seconds, then the wait until every transaction is final. Faults, in
order: none (the baseline), SIGKILL of the provider worker (calls in flight), of the worker
(commands and events), of the relay process (what every process commits reaches the queues
through it), of the scheduler, of a web worker, of the gunicorn master, of Redis, and an
immediate PostgreSQL restart.

After each fault, checked (a failure is a violation, and the exit status is 1):

- a purchase refused with 422 "not available now" (the simulator's 502s can open the
  configuration's circuit breaker for 30 s) left no transaction, and no more than half of
  a fault's purchases were refused so; every other purchase was accepted, as the
  transaction it was answered with;
- every transaction is final (no ``pending``, ``processing`` or ``review``), nothing is
  held (no hold ``placed``, the wallet's ``held`` is 0), ``rop wallets verify`` is clean;
- exactly once, against the simulator's records: a succeeded transaction has exactly one
  reference delivered at the provider (and was charged its price once); a failed one has
  none delivered (and was not charged: its hold voided), whether the provider received it
  or not; a refunded one was delivered once and refunded there; the provider received no
  reference that is not a transaction's; the wallet's balance is the top-up less the
  succeeded transactions' prices.

Printed per fault: ``restart_s`` (the fault until the process is back: a new pid, Redis
answering, PostgreSQL accepting), ``api_s`` (the fault until the API answered again after
the last request that failed; 0 when none failed), ``settled_s`` (the fault until every
transaction accepted by then is final, nothing is held, the provider has sent its later
outcomes and had its webhooks answered, and the records agree). The last line is one JSON
object of the figures.

The transaction service's timings for the run (``ROP_TX_*``, docs/transactions.md): an
unanswered attempt is checked after 70 s (the shortest allowed; 120 s by default), status
checks at 5, 10, 20, 60 s, an accepted transaction re-driven after 5 s. ``ROP_TX_*``
variables in the environment win.

    .venv/bin/python bench/chaos.py [--rate 15] [--faults provider,redis,...] [--database-url URL]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provider_sim import pending as sim_pending  # the sibling module: the simulator's records
from provider_sim import report as sim_report

from hub.embedded_redis import free_port
from hub.pgcluster import PrivateCluster, find_binaries

ROP = [sys.executable, "-m", "hub.cli"]
SIM = Path(__file__).resolve().parent / "provider_sim.py"
FUNDS = 10**12
#: the bench's funds are one top-up above the hub's default limit per top-up: it raises the
#: limit through the hub's own setting, for the app it seeds with and the hub it starts
LIMITS = {"ROP_AMOUNT_LIMIT_TOPUP": str(FUNDS)}
PRODUCT = "TSEL10"
#: the hub's answer (422) while no configuration may sell the product: its circuit breaker is open
NOT_AVAILABLE = f"product '{PRODUCT}' is not available now".encode()
#: every outcome of the simulator, in turn (the last four digits of the number)
SUFFIXES = ("0101", "9999", "4444", "8888", "7777", "6666", "5555", "3333", "2222")
#: the transaction service's timings for the run, the shortest its ROP_TX_* variables allow for
#: a dead provider worker's purchases (docs/transactions.md, "Settings"); the caller's win
TIMINGS = {"ROP_TX_SENT_TIMEOUT": "70", "ROP_TX_CHECK_SCHEDULE": "5,10,20,60", "ROP_TX_REDRIVE_AFTER": "5"}
FAULTS = ("none", "provider", "worker", "relay", "scheduler", "web-worker", "gunicorn", "redis", "postgresql")
FINAL = ("succeeded", "failed", "refunded")


def log(line: str) -> None:
    print(f"chaos: {line}", flush=True)


def poll(condition, timeout: float, interval: float = 0.1):
    """Return ``condition()``'s first truthy value; None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - a service on its way back: ask again
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# -- the hub ---------------------------------------------------------------------------------------
class Hub:
    """``rop up`` on an instance folder, its processes found by their command lines."""

    def __init__(self, root: Path, database_url: str):
        self.root = root
        self.instance = root / "instance"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROP_")}
        self.env.update(TIMINGS)
        self.env.update(LIMITS)
        self.env.update({k: v for k, v in os.environ.items() if k.startswith("ROP_TX_")})
        self.env.update(ROP_INSTANCE_PATH=str(self.instance), ROP_DATABASE_URL=database_url,
                        ROP_WEBHOOK_ALLOW_PRIVATE="1", ROP_PUBLIC_URL=self.url, ROP_LOG_LEVEL="WARNING")
        self.log_path = root / "up.log"
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*ROP, *args], check=False, env={**self.env, "ROP_REDIS_URL": self.redis_url()},
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise RuntimeError(f"rop {' '.join(args)}: {done.stderr.strip()[-500:]}")
        return done

    def up(self) -> None:
        subprocess.run([*ROP, "db", "upgrade"], env=self.env, check=True, capture_output=True, timeout=300)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([*ROP, "up", "--port", str(self.port), "--max-restarts", "10"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)
        if not poll(self.answers, 180, 0.25):
            raise RuntimeError(f"the hub did not start; see {self.log_path}")

    def redis_url(self) -> str:
        return (self.instance / "redis" / "url").read_text().strip()

    def answers(self, path: str = "/healthz") -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
            conn.request("GET", path)
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False

    def child(self, marker: str) -> int | None:
        """The pid of ``rop up``'s process (a group leader) whose command line has ``marker``."""
        for proc in psutil.Process(self.proc.pid).children():
            try:
                if (marker in " ".join(proc.cmdline()) and os.getpgid(proc.pid) == proc.pid
                        and proc.status() != psutil.STATUS_ZOMBIE):
                    return proc.pid
            except (psutil.NoSuchProcess, ProcessLookupError):
                continue
        return None

    def web_worker(self) -> int | None:
        master = self.child("gunicorn")
        workers = psutil.Process(master).children() if master else []
        return workers[0].pid if workers else None

    def redis_pid(self) -> int | None:
        try:
            return int((self.instance / "redis" / "redis.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def seed(hub: Hub, sim_port: int) -> dict:
    """A tenant with a funded wallet and an API client, a Digiflazz configuration pointing at
    the simulator. Through the hub's services, in this process."""
    os.environ.update({k: v for k, v in hub.env.items() if k.startswith("ROP_")})
    os.environ["ROP_REDIS_URL"] = hub.redis_url()
    from hub.app import create_app
    from hub.context import CallContext
    from hub.db import unit_of_work
    from hub.providers import service as providers
    from hub.tenancy import service as tenancy
    from hub.wallets import accounts as wallets

    app = create_app()
    db = app.extensions["rop"].db
    system = CallContext.system(actor="bench:chaos")
    with app.app_context(), unit_of_work(db) as uow:
        tenant = tenancy.create_tenant(system, uow, f"Chaos {uuid.uuid4().hex[:6]}")
        client, secret = tenancy.create_client(system, uow, tenant.id, rate_limit_per_minute=1_000_000)
        ctx = CallContext.system(actor="bench:chaos", tenant_id=tenant.id)
        wallet = wallets.get_main_wallet(ctx, uow)
        wallets.topup(ctx, uow, wallet.id, FUNDS, "chaos-funds")
        config = providers.add_config(uow, "digiflazz", "Digiflazz simulator",
                                      settings={"base_url": f"http://127.0.0.1:{sim_port}", "timeout": 10},
                                      credentials={"username": "chaos", "api_key": "chaos-key",
                                                   "webhook_secret": "chaos-webhook"})
        webhook_url = providers.callback_url(config)
        uow.commit()
        out = {"tenant_id": tenant.id, "wallet_id": wallet.id, "client_id": client.id, "secret": secret,
               "config_id": config.id, "webhook_url": webhook_url}
    return out


# -- the stream of purchases -----------------------------------------------------------------------
class Stream:
    """Clients posting purchases at ``rate``/s, each retried with the same ``ref_id`` (and body)
    until the hub answers it (2xx or a 4xx other than 429); every try is recorded. A 422 "not
    available now" (the provider configuration's circuit breaker open: a third of the
    simulator's answers are 502s, and they come back before the 0.3 s successes) is a
    refusal, not a violation; the checks then require that the hub has no transaction of
    that ``ref_id``."""

    def __init__(self, hub: Hub, client_id: str, secret: str, rate: float, clients: int = 4):
        self.hub, self.client_id, self.secret = hub, client_id, secret
        self.rate, self.clients = rate, clients
        self.token: str | None = None
        self.lock = threading.Lock()
        self.tries: list[tuple[float, float, str]] = []  # (start, end, outcome)
        self.submitted: dict[str, dict] = {}
        self.unanswered: list[str] = []
        self.refused: dict[str, str] = {}  # ref_id -> number: answered 422 "not available now"
        self.counter = 0
        self.running = threading.Event()
        self.threads: list[threading.Thread] = []

    def _token(self) -> str:
        import base64

        basic = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.hub.port, timeout=30)
        conn.request("POST", "/oauth/token", body="grant_type=client_credentials",
                     headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"token: HTTP {response.status}")
        return payload["access_token"]

    def start(self, prefix: str) -> None:
        self.prefix, self.started = prefix, time.monotonic()
        self.sent = 0
        self.running.set()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.running.clear()
        for thread in self.threads:
            thread.join(300)

    def _next(self) -> tuple[str, str] | None:
        with self.lock:
            n, self.sent, self.counter = self.counter, self.sent + 1, self.counter + 1
            due = self.started + self.sent / self.rate
        time.sleep(max(0.0, due - time.monotonic()))
        if not self.running.is_set():
            with self.lock:
                self.sent -= 1  # not sent after all (its number is skipped)
            return None
        return f"chaos-{self.prefix}-{n}", f"0812{n % 10_000:04d}{SUFFIXES[n % len(SUFFIXES)]}"

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.hub.port, timeout=30)
        while self.running.is_set():
            job = self._next()
            if job is None:
                return
            ref_id, number = job
            body = json.dumps({"ref_id": ref_id, "product_code": PRODUCT, "customer_no": number})
            deadline = time.monotonic() + 240
            while True:
                started = time.monotonic()
                try:
                    if self.token is None:
                        self.token = self._token()
                    conn.request("POST", "/v1/transactions", body=body,
                                 headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
                    response = conn.getresponse()
                    payload = response.read()
                    outcome = str(response.status)
                except (OSError, http.client.HTTPException, RuntimeError, ValueError) as exc:
                    outcome = type(exc).__name__
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.hub.port, timeout=30)
                with self.lock:
                    self.tries.append((started, time.monotonic(), outcome))
                if outcome in ("200", "201", "202"):
                    with self.lock:
                        self.submitted[ref_id] = {"number": number, "id": json.loads(payload)["id"]}
                    break
                if outcome == "401":
                    self.token = None
                elif outcome == "422" and NOT_AVAILABLE in payload:
                    # a definitive refusal, nothing written: the configuration's breaker is open
                    # (a third of the simulator's answers are 502s, and they come back first)
                    with self.lock:
                        self.refused[ref_id] = number
                    break
                elif outcome.startswith("4") and outcome != "429":
                    with self.lock:
                        self.unanswered.append(f"{ref_id}: HTTP {outcome} {payload[:200]!r}")
                    break
                if time.monotonic() > deadline:
                    with self.lock:
                        self.unanswered.append(f"{ref_id}: no answer after 240 s (last: {outcome})")
                    break
                time.sleep(0.2)

    def outage(self, t0: float) -> tuple[list[tuple[float, float, str]], float, float]:
        """The tries that failed after ``t0``; when the API answered again (the first success of a
        try started after the last failed one began, seconds after ``t0``; 0 when none failed);
        the longest try that ended after ``t0``."""
        with self.lock:
            tries = [t for t in self.tries if t[1] >= t0]
        failed = [t for t in tries if t[2] not in ("200", "201", "202")]
        slowest = max((end - start for start, end, _ in tries), default=0.0)
        if not failed:
            return [], 0.0, slowest
        last = max(start for start, _, _ in failed)
        back = min((end for start, end, outcome in tries if start >= last and outcome in ("200", "201", "202")),
                   default=max(end for _, end, _ in failed))
        return failed, back - t0, slowest


# -- the checks ------------------------------------------------------------------------------------
class Ledger:
    """Reads the hub's database directly (a connection pool of its own, pinged before use)."""

    def __init__(self, database_url: str, tenant_id: str, wallet_id: str):
        self.engine = create_engine(database_url, pool_pre_ping=True, pool_size=2)
        self.tenant_id, self.wallet_id = tenant_id, wallet_id

    def open_count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM transactions WHERE tenant_id = :t AND status NOT IN "
                                     "('succeeded', 'failed', 'refunded')"), {"t": self.tenant_id}).scalar()

    def open_sample(self, limit: int = 3) -> list[tuple[str, str, str]]:
        """Some transactions not final yet: (id, status, customer number)."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT id, status, customer_no FROM transactions WHERE tenant_id = :t AND status NOT IN "
                "('succeeded', 'failed', 'refunded') ORDER BY created_at LIMIT :n"), {"t": self.tenant_id, "n": limit})]

    def settled(self) -> bool:
        with self.engine.connect() as conn:
            placed = conn.execute(text("SELECT count(*) FROM wallet_holds WHERE tenant_id = :t AND status = 'placed'"),
                                  {"t": self.tenant_id}).scalar()
        return self.open_count() == 0 and placed == 0

    def transactions(self) -> dict[str, dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT t.id, t.ref_id, t.status, t.price, h.status, h.captured, h.reversed, h.amount "
                "FROM transactions t LEFT JOIN wallet_holds h ON h.id = t.hold_id WHERE t.tenant_id = :t"),
                {"t": self.tenant_id}).all()
        return {r[0]: {"ref_id": r[1], "status": r[2], "price": r[3], "hold": r[4], "captured": r[5] or 0,
                       "reversed": r[6] or 0, "held_amount": r[7]} for r in rows}

    def wallet(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            return tuple(conn.execute(text("SELECT available, held FROM wallets WHERE id = :w"),
                                      {"w": self.wallet_id}).one())


def check(ledger: Ledger, hub: Hub, sim_db: Path, stream: Stream, *, verify: bool = True) -> tuple[list[str], dict]:
    """Every check of the module's docstring (``rop wallets verify`` only with ``verify``);
    returns (violations, counts)."""
    violations: list[str] = []
    trx = ledger.transactions()
    by_ref = {t["ref_id"]: tid for tid, t in trx.items()}
    for ref_id, sent in stream.submitted.items():
        if by_ref.get(ref_id) != sent["id"]:
            violations.append(f"{ref_id}: accepted as {sent['id']}, the hub has {by_ref.get(ref_id)}")
    violations += [f"unanswered purchase {line}" for line in stream.unanswered]
    violations += [f"{ref_id}: refused as not available, the hub has {by_ref[ref_id]}"
                   for ref_id in stream.refused if ref_id in by_ref]
    received = sim_report(sim_db)
    refs_of: dict[str, list[str]] = {}
    for ref in received:
        tid = ref.rsplit("-", 1)[0]
        if tid not in trx:
            violations.append(f"the provider received {ref}, which is no transaction's")
        refs_of.setdefault(tid, []).append(ref)
    counts = {s: 0 for s in (*FINAL, "other")}
    never_received = refund_seen_as_failure = 0
    charged = 0
    for tid, t in trx.items():
        refs = refs_of.get(tid, [])
        states = [received[r]["state"] for r in refs]
        delivered = states.count("success")  # delivered and kept (a refund at the provider undid one)
        status = t["status"]
        counts[status if status in FINAL else "other"] += 1
        never_received += not refs
        if any(received[r]["purchases"] != 1 for r in refs):
            violations.append(f"{tid}: purchase requests per reference at the provider: "
                              f"{ {r: received[r]['purchases'] for r in refs} }")
        if status == "succeeded":
            charged += t["price"]
            if delivered != 1:
                violations.append(f"{tid}: succeeded (charged), the provider says {states}")
            if (t["hold"], t["captured"], t["reversed"]) != ("captured", t["price"], 0):
                violations.append(f"{tid}: succeeded, hold {t['hold']} captured {t['captured']} "
                                  f"reversed {t['reversed']}")
        elif status == "failed":
            if delivered:
                violations.append(f"{tid}: failed (not charged), the provider delivered it: {states}")
            if t["hold"] != "voided" or t["captured"]:
                violations.append(f"{tid}: failed, hold {t['hold']} captured {t['captured']}")
            refund_seen_as_failure += "refunded" in states
        elif status == "refunded":
            if delivered or "refunded" not in states:
                violations.append(f"{tid}: refunded (charge reversed), the provider says {states}")
            if t["captured"] != t["price"] or t["reversed"] != t["price"]:
                violations.append(f"{tid}: refunded, captured {t['captured']} reversed {t['reversed']}")
        else:
            violations.append(f"{tid}: not final ({status})")
    available, held = ledger.wallet()
    if held:
        violations.append(f"the wallet holds {held}")
    if FUNDS - available != charged:
        violations.append(f"the wallet paid {FUNDS - available}, the succeeded transactions cost {charged}")
    ledger_ok = None
    if verify:
        done = hub.cli("wallets", "verify", "--json", check=False)
        try:
            ledger_ok = done.returncode == 0 and json.loads(done.stdout)["ok"]
        except ValueError:
            ledger_ok = False
        if not ledger_ok:
            violations.append(f"rop wallets verify: {done.stdout.strip()[-300:]} {done.stderr.strip()[-300:]}")
    counts.update(transactions=len(trx), never_received=never_received, charged=charged,
                  refused_not_available=len(stream.refused),
                  first_request_lost=sum(r["dropped"] for r in received.values()),
                  failed_after_a_refund_at_the_provider=refund_seen_as_failure,
                  references=len(received), purchase_requests=sum(r["purchases"] for r in received.values()),
                  status_requests=sum(r["status_checks"] for r in received.values()), ledger_ok=ledger_ok)
    return violations, counts


# -- the faults ------------------------------------------------------------------------------------
def kill_child(hub: Hub, marker: str):
    """SIGKILL ``rop up``'s child ``marker``; return the check that it is back (a new pid)."""
    pid = hub.child(marker)
    if pid is None:
        raise RuntimeError(f"no process {marker!r} to kill")
    os.kill(pid, signal.SIGKILL)
    return lambda: (hub.child(marker) or pid) != pid


def fault_action(name: str, hub: Hub, cluster: PrivateCluster | None):
    if name == "none":
        return lambda: True
    if name == "provider":
        return kill_child(hub, "--queues provider")
    if name == "worker":
        return kill_child(hub, "worker --queues commands")
    if name == "relay":
        return kill_child(hub, "hub.cli relay")
    if name == "scheduler":
        return kill_child(hub, "hub.cli scheduler")
    if name == "gunicorn":
        back = kill_child(hub, "gunicorn")
        return lambda: back() and hub.answers()
    if name == "web-worker":
        pid = hub.web_worker()
        os.kill(pid, signal.SIGKILL)
        return lambda: hub.web_worker() not in (None, pid) and hub.answers()
    if name == "redis":
        pid = hub.redis_pid()
        os.kill(pid, signal.SIGKILL)
        return lambda: hub.redis_pid() not in (None, pid) and hub.answers("/readyz")
    if name == "postgresql":
        cluster.restart("immediate", durable=True)
        return lambda: hub.answers("/readyz")
    raise ValueError(name)


def run_fault(name: str, hub: Hub, cluster, stream: Stream, ledger: Ledger, sim_db: Path, args) -> dict:
    refused_before = len(stream.refused)
    stream.start(name)
    time.sleep(args.warmup)
    t0 = time.monotonic()
    back = fault_action(name, hub, cluster)
    restarted = poll(back, 180, 0.05)
    restart_s = time.monotonic() - t0
    api_ok = poll(lambda: hub.answers("/readyz"), 120, 0.1)
    time.sleep(args.after)
    stream.stop()
    failures, api_s, slowest_s = stream.outage(t0)
    # Settled: every transaction final, nothing held, the provider quiet (its later outcomes
    # sent and its webhooks delivered) and the hub agreeing with it.
    last_waiting: list[str] = []  # what the last unsettled look found (the laggards, for the log)

    def is_settled() -> bool:
        pending_now = sim_pending(sim_db)
        now = [f"{tid} {status} (number …{number[-4:]})" for tid, status, number in ledger.open_sample()]
        now += [f"{pending_now} outcomes or webhooks pending at the provider"] if pending_now else []
        now = now or check(ledger, hub, sim_db, stream, verify=False)[0]
        if now:
            last_waiting[:] = now[:3]
        return not now and ledger.settled()

    settled = poll(is_settled, args.settle_timeout, 0.25)
    settled_s = time.monotonic() - t0
    violations, counts = check(ledger, hub, sim_db, stream)
    if not restarted:
        violations.append(f"{name}: not back after 180 s")
    if not api_ok:
        violations.append(f"{name}: the API did not answer /readyz within 120 s")
    if not settled:
        violations.append(f"{name}: not settled after {args.settle_timeout:g} s ({ledger.open_count()} transactions "
                          f"not final, {sim_pending(sim_db)} outcomes or webhooks pending at the provider)")
    if not hub.alive():
        violations.append(f"{name}: rop up exited ({hub.proc.returncode})")
    refused = len(stream.refused) - refused_before
    if refused * 2 > stream.sent:  # a refusal is allowed, not a fault that goes untested
        violations.append(f"{name}: {refused} of {stream.sent} purchases refused as not available")
    errors: dict[str, int] = {}
    for _s, _e, outcome in failures:
        errors[outcome] = errors.get(outcome, 0) + 1
    figures = {"restart_s": round(restart_s, 2), "api_s": round(api_s, 2), "slowest_request_s": round(slowest_s, 2),
               "settled_s": round(settled_s, 2), "last_waited_for": last_waiting,
               "failed_requests": errors, "purchases": stream.sent, "violations": len(violations)}
    log(f"{name}: back in {figures['restart_s']} s, API answering after {figures['api_s']} s "
        f"(slowest request {figures['slowest_request_s']} s), "
        f"all final after {figures['settled_s']} s; {stream.sent} purchases, failed requests {errors or 0}, "
        f"refused as not available so far {counts['refused_not_available']}; "
        f"{counts['transactions']} transactions so far ({counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['refunded']} refunded), ledger {'ok' if counts['ledger_ok'] else 'MISMATCH'}, "
        f"{len(violations)} violations")
    if last_waiting:
        log(f"  last waited for: {'; '.join(last_waiting)}")
    for line in violations[:20]:
        log(f"  violation: {line}")
    return {"figures": figures, "counts": counts, "violations": violations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=15.0, help="purchases per second")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of stream before each fault")
    parser.add_argument("--after", type=float, default=2.0, help="seconds of stream once the hub is back")
    parser.add_argument("--settle-timeout", type=float, default=180.0)
    parser.add_argument("--latency", type=float, default=0.3, help="the simulator's answer delay (s)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--database-url", default=None,
                        help="where no PostgreSQL binaries are: a database to use (default: a SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, records)")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault {unknown[0]!r}; choose from {', '.join(FAULTS)}")

    began, load_at_start = time.monotonic(), round(os.getloadavg()[0], 2)

    def terminated(signum, _frame):  # a CI timeout: clean up (the finally below), exit 143
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    root = Path(tempfile.mkdtemp(prefix="rop-chaos-"))
    cluster: PrivateCluster | None = None
    hub: Hub | None = None
    sim: subprocess.Popen | None = None
    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    database, hub_env = "?", {}
    try:
        bindir, why = find_binaries()
        if bindir is None:
            skipped["postgresql"] = f"no private PostgreSQL cluster to restart: {why}"
        else:
            try:
                cluster = PrivateCluster(bindir)
                cluster.start(durable=True)  # an immediate stop must not lose a commit the hub acknowledged
                database_url = cluster.url.replace("postgresql://", "postgresql+psycopg://")
                database = f"postgresql (private cluster, {bindir})"
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                if cluster is not None:
                    cluster.destroy()
                cluster = None
                skipped["postgresql"] = f"the private cluster could not be made ({exc})"
        if cluster is None:
            database_url = args.database_url or f"sqlite:///{root}/hub.db"
            if database_url.startswith(("postgresql://", "postgres://")):  # the hub's driver: psycopg 3
                database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
            database = "postgresql" if database_url.startswith("postgres") else "sqlite"
            log(f"skipping the PostgreSQL restart: {skipped['postgresql']}")
        faults = [f for f in faults if f not in skipped]
        log(f"run folder {root}; database: {database}")
        hub = Hub(root, database_url)
        hub_env = hub.env
        hub.up()
        sim_port, sim_db = free_port(), root / "provider.sqlite"
        seeded = seed(hub, sim_port)
        sim = subprocess.Popen([sys.executable, str(SIM), "--db", str(sim_db), "--port", str(sim_port),
                                "--webhook-url", seeded["webhook_url"], "--latency", str(args.latency)],
                               stdout=open(root / "provider.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        if not poll(lambda: http.client.HTTPConnection("127.0.0.1", sim_port, timeout=1).connect() or True, 30):
            raise RuntimeError("the provider simulator did not start")
        hub.cli("catalog", "sync")
        ledger = Ledger(database_url, seeded["tenant_id"], seeded["wallet_id"])
        stream = Stream(hub, seeded["client_id"], seeded["secret"], args.rate)
        log(f"hub on {hub.url}, provider simulator on 127.0.0.1:{sim_port}; faults: {', '.join(faults)}")
        for name in faults:
            results[name] = run_fault(name, hub, cluster, stream, ledger, sim_db, args)
            if not hub.alive():
                break
        code = hub.stop()
        if code != 0:
            results.setdefault("stop", {"violations": [f"rop up exited {code} on SIGTERM"]})
    finally:
        if hub is not None:
            hub.stop()
        if sim is not None:
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
        if cluster is not None:
            cluster.destroy()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    violations = sorted({v for r in results.values() for v in r.get("violations", [])})
    last = next((r["counts"] for r in reversed(results.values()) if "counts" in r), {})
    summary = {
        "database": database, "rate": args.rate, "simulator_latency_s": args.latency,
        "settings": {k: v for k, v in hub_env.items() if k.startswith("ROP_TX_")},
        "faults": {name: r["figures"] for name, r in results.items() if "figures" in r},
        "skipped": skipped,
        "transactions": last.get("transactions", 0),
        "succeeded": last.get("succeeded", 0), "failed": last.get("failed", 0), "refunded": last.get("refunded", 0),
        "not_final": last.get("other", 0), "never_received": last.get("never_received", 0),
        "bought_by_their_status_check": last.get("first_request_lost", 0),
        "provider_references": last.get("references", 0), "provider_status_requests": last.get("status_requests", 0),
        "charged": last.get("charged", 0), "ledger_ok": last.get("ledger_ok", False),
        "refused_not_available": last.get("refused_not_available", 0),
        "exactly_once": bool(results) and not violations, "violations": len(violations),
        "seconds": round(time.monotonic() - began, 1),
        "load_average_1m": {"start": load_at_start, "end": round(os.getloadavg()[0], 2)},
    }
    if args.keep:
        summary["folder"] = str(root)
    print(json.dumps(summary), flush=True)
    return 0 if summary["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
