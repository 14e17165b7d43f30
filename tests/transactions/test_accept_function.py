"""Accepting a purchase on PostgreSQL is one call of ``rop_accept_v2`` (hub.transactions.accept):

- it writes every row the Python path (``service.submit``, the SQLite primitive) writes, the
  same (parity over random purchases, replays, conflicts and refused funds);
- a ``ref_id`` raced from many connections is accepted once, the others are replays;
- a warm web process sends one statement per accepted purchase on the request's thread (the
  function's call, in autocommit) and two Redis commands; its background relay sends the
  purchases handed over together in one Redis pipeline and one statement.
"""
from __future__ import annotations

import datetime as dt
import random
import re
import threading
from typing import Any

import pytest
from sqlalchemy import select, text

from hub.bus.webhooks import set_webhook
from hub.context import CallContext
from hub.db import unit_of_work
from hub.errors import HubError
from hub.transactions.accept import accept
from hub.transactions.models import Transaction
from hub.wallets import service as wallets
from hub.wallets.models import Hold
from tests.transactions.conftest import FUNDS, buy
from tests.transactions.test_reference_cache import CountingConnection, Statements

pytestmark = pytest.mark.postgres(reason="rop_accept_v2 is a PostgreSQL function; SQLite keeps the Python path")

PURCHASES = 60
CUSTOMERS = ("081234567890", "081234567891", "085712345678")


# -- parity ---------------------------------------------------------------------------------
def _ctx(tenant_id: str, n: int) -> CallContext:
    return CallContext(tenant_id=tenant_id, client_id="cli_parity", scopes=frozenset({"transactions:write"}),
                       actor=None, request_id=f"req-{n}")


def _world(app, tenant_factory, rng: random.Random, prices: dict[str, int]) -> list[dict[str, Any]]:
    """Three tenants: funds for a few purchases each (so some are refused), a sub-wallet, a
    wallet in another currency, a webhook for every event or for transaction events only."""
    tenants = []
    db = app.extensions["rop"].db
    cheapest = min(prices.values())
    for n in range(3):
        tenant = tenant_factory()
        ctx = CallContext.system(actor="tests", tenant_id=tenant.id)
        with app.test_request_context(), unit_of_work(db) as uow:
            main = wallets.get_main_wallet(ctx, uow).id
            wallets.topup(ctx, uow, main, cheapest * rng.randint(3, 9), "seed")
            sub = wallets.create_wallet(ctx, uow, "customer-1").id
            wallets.topup(ctx, uow, sub, cheapest * rng.randint(0, 3) + 1, "seed-sub")
            usd = wallets.create_wallet(ctx, uow, "customer-usd", currency="USD").id
            if n:
                set_webhook(CallContext(tenant_id=tenant.id, client_id="tests", scopes=frozenset({"webhooks:write"})),
                            uow, "http://127.0.0.1:9/hook", events=None if n == 1 else ["transaction.*"])
            uow.commit()
        tenants.append({"id": tenant.id, "wallets": [None, main, sub, usd, "wal_not_mine"]})
    return tenants


def _script(rng: random.Random, codes: list[str], cheapest: str) -> list[dict[str, Any]]:
    """The purchases: tenant index, wallet index, body; a third reuse an earlier ref_id (the
    same body: a replay; another customer number: 409). They open with the cheapest product
    on a funded main wallet, its replay, a conflicting body, an unknown product and four on a
    sub-wallet funded for three at most, so every seed meets every case."""
    sure = {"tenant": 0, "wallet": 0, "ref_id": "ref-sure", "product_code": cheapest, "customer_no": CUSTOMERS[0]}
    ops: list[dict[str, Any]] = [sure, dict(sure), dict(sure, customer_no=CUSTOMERS[1]),
                                 dict(sure, ref_id="ref-unknown", product_code="NOPE1")]
    # the sub-wallet (funds for at most three) pays four: the fourth is refused
    ops += [dict(sure, tenant=1, wallet=2, ref_id=f"ref-sub-{n}") for n in range(4)]
    for n in range(PURCHASES):
        if ops and rng.random() < 0.3:
            earlier = dict(rng.choice(ops))
            if rng.random() < 0.5:
                earlier["customer_no"] = rng.choice(CUSTOMERS)
            ops.append(earlier)
            continue
        ops.append({"tenant": rng.randrange(3), "wallet": rng.choices(range(5), weights=(6, 3, 3, 1, 1))[0],
                    "ref_id": f"ref-{n}", "product_code": rng.choice(codes), "customer_no": rng.choice(CUSTOMERS)})
    return ops


def _run(app, tenants, ops, primitive: str) -> list[Any]:
    db = app.extensions["rop"].db
    answers = []
    for n, op in enumerate(ops):
        tenant = tenants[op["tenant"]]
        with app.test_request_context(), unit_of_work(db) as uow:
            try:
                trx, created = accept(_ctx(tenant["id"], n), uow, primitive=primitive, ref_id=op["ref_id"],
                                      product_code=op["product_code"], customer_no=op["customer_no"],
                                      wallet_id=tenant["wallets"][op["wallet"]])
                uow.commit()
                answers.append(("created" if created else "replay", trx.id, trx.status, trx.price))
            except HubError as exc:
                uow.rollback()
                answers.append((exc.status, exc.detail, exc.extra, exc.errors))
    return answers


_TABLES = {  # table: (its tenant column, the order of its rows)
    "wallets": ("tenant_id", "created_at, id"),
    "transactions": ("tenant_id", "created_at"),
    "transaction_timeline": ("tenant_id", "id"),
    "wallet_journals": ("tenant_id", "created_at, kind"),
    "wallet_holds": ("tenant_id", "created_at"),
    "wallet_entries": ("tenant_id", "seq"),
    "bus_events": ("tenant_id", "seq"),
    "bus_outbox": ("tenant_id", "created_at, type"),
    "bus_webhook_deliveries": ("tenant_id", "(SELECT e.seq FROM bus_events e WHERE e.id = event_id)"),
}
_SERIALS = {"transaction_timeline": "id", "wallet_entries": "seq", "bus_events": "seq"}
# ids, fingerprints (hashes of bodies that carry ids) and request ids (uuid4 hex): named in the order they are met
_ID = re.compile(r"\b(trx|hld|jnl|msg|whd|wal|ten|cli|req)_[0-9a-f]{8,}\b|^()[0-9a-f]{64}$|^()[0-9a-f]{32}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


class _Normal:
    """Ids become ``prefix#n`` in the order they are first met (fingerprints ``fp#n``), times ``<time>``."""

    def __init__(self, tenant_ids: list[str]):
        self.names: dict[str, str] = {t: f"ten#{n}" for n, t in enumerate(tenant_ids)}

    def _id(self, match: re.Match) -> str:
        found = match.group(0)
        if found not in self.names:
            kind = match.group(1) or ("fp" if match.group(2) is not None else "uuid")
            self.names[found] = f"{kind}#{sum(1 for v in self.names.values() if v.startswith(kind + '#'))}"
        return self.names[found]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(value[k]) for k in sorted(value)}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, dt.datetime):
            return "<time>"
        if isinstance(value, str):
            return "<time>" if _TIME.match(value) else _ID.sub(self._id, value)
        return value


def _rows(app, tenant_ids: list[str], answers: list[Any]) -> dict[str, Any]:
    normal = _Normal(tenant_ids)
    found: dict[str, Any] = {"answers": normal(answers)}
    with app.extensions["rop"].db.engine.connect() as conn:
        for table, (column, order) in _TABLES.items():
            rows = conn.execute(text(f"SELECT * FROM {table} WHERE {column} = ANY(:ids) ORDER BY {order}"),
                                {"ids": tenant_ids}).mappings().all()
            found[table] = [normal({k: v for k, v in row.items() if k != _SERIALS.get(table)}) for row in rows]
    return found


def test_the_function_writes_every_row_the_python_path_writes(app, tenant_factory, sandbox, client):
    probe = tenant_factory()
    prices = {}
    for code in ("TEL10", "PLN20", "GOPAY25", "ML86"):
        answer = client.get(f"/v1/products/{code}", headers=probe.headers).get_json()
        if answer.get("price") and answer.get("active") and answer.get("type", "prepaid") == "prepaid":
            prices[code] = answer["price"]
    assert len(prices) >= 3, prices
    seed = random.randrange(1 << 30)
    ops = _script(random.Random(seed), sorted(prices) + ["NOPE1"], min(prices, key=prices.get))
    worlds = {}
    for primitive in ("python", "function"):
        rng = random.Random(seed)
        tenants = _world(app, tenant_factory, rng, prices)
        answers = _run(app, tenants, ops, primitive)
        worlds[primitive] = _rows(app, [t["id"] for t in tenants], answers)
    python, function = worlds["python"], worlds["function"]
    kinds = {str(a[0]) for a in python["answers"]}
    assert {"created", "replay", "402", "409", "422"} <= kinds, (seed, kinds)  # every case was met
    assert len(python["bus_webhook_deliveries"]) > 0 and len(python["wallet_entries"]) > 6, seed
    for table in ("answers", *_TABLES):
        assert function[table] == python[table], f"{table} differs (seed {seed}): {_first_difference(python[table], function[table])}"


def _first_difference(python: list, function: list) -> str:
    if len(python) != len(function):
        return f"{len(python)} rows by the Python path, {len(function)} by the function"
    for n, (a, b) in enumerate(zip(python, function)):
        if a != b:
            keys = [k for k in a if a.get(k) != b.get(k)] if isinstance(a, dict) else []
            return f"row {n}: " + "; ".join(f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys) if keys else f"{a!r} != {b!r}"
    return "?"


# -- a ref_id raced from many connections -----------------------------------------------------
RACERS = 8


def test_the_messages_the_function_path_builds_unvalidated_are_valid(app, client, funded):
    """The accept path builds its messages with ``Message.built`` (not validated again): each
    stored envelope's payload loads through its message's schema, as a handler loads it."""
    from hub.bus.messages import MESSAGE_TYPES

    for n in range(3):
        assert buy(client, funded.tenant, f"08123456771{n}").status_code == 202
    with app.extensions["rop"].db.engine.connect() as conn:
        envelopes = [row[0] for row in conn.execute(
            text("SELECT envelope FROM bus_outbox WHERE tenant_id = :t UNION ALL "
                 "SELECT envelope FROM bus_events WHERE tenant_id = :t"), {"t": funded.tenant.id})]
    types = {e["type"] for e in envelopes}
    assert {"transaction.accepted", "transaction.process", "wallet.hold_placed"} <= types, types
    for envelope in envelopes:
        klass = MESSAGE_TYPES[envelope["type"]]
        assert klass._schema().validate(envelope["payload"]) == {}, envelope


def test_one_ref_id_from_many_connections_is_accepted_once_and_replayed_to_the_others(app, funded):
    db = app.extensions["rop"].db
    assert buy(app.test_client(), funded.tenant, "081234567891").status_code == 202  # warm: nothing read per call
    start = threading.Barrier(RACERS)
    answers: list[Any] = [None] * RACERS

    def race(n: int) -> None:
        with app.test_request_context(), unit_of_work(db) as uow:
            if n % 2:  # half call in the unit of work's transaction, half in autocommit (the steady state)
                uow.session.connection()
            start.wait(30)
            try:
                trx, created = accept(_ctx(funded.tenant.id, n), uow, ref_id="the-one", product_code="TEL10",
                                      customer_no="081234567890")
                uow.commit()
                answers[n] = (trx.id, created)
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                answers[n] = exc

    threads = [threading.Thread(target=race, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(a, tuple) for a in answers), answers
    assert sorted(created for _, created in answers) == [False] * (RACERS - 1) + [True]
    assert len({trx_id for trx_id, _ in answers}) == 1
    with unit_of_work(db, readonly=True) as uow:
        trx = uow.session.scalars(select(Transaction).where(Transaction.tenant_id == funded.tenant.id)).all()
        holds = uow.session.scalars(select(Hold).where(Hold.tenant_id == funded.tenant.id)).all()
        wallet = wallets.get_wallet(CallContext.system(tenant_id=funded.tenant.id), uow, funded.wallet_id)
        the_one = [t for t in trx if t.ref_id == "the-one"]
        assert [t.id for t in the_one] == [answers[0][0]] and len(trx) == 2 and len(holds) == 2
        assert the_one[0].hold_id in {h.id for h in holds}
        assert (wallet.available, wallet.held) == (FUNDS - 2 * trx[0].price, 2 * trx[0].price)
        assert wallets.verify_ledger(uow)["ok"]


# -- what a warm web process sends per purchase --------------------------------------------
#: Redis commands per accepted purchase on the request's thread in a warm web process whose
#: tenant has a webhook: the rate limit and the cache versions with the breakers (one MGET).
#: The jobs and the webhook deliveries go from the process's background relay (hub.bus.relay).
REDIS_COMMANDS = 2
#: ... and what the relay sends for PURCHASES_PER_SEND purchases handed over together: one
#: pipeline (the ProcessTransaction commands in one batch job, the deliveries) and one
#: statement marking every outbox row published
PURCHASES_PER_SEND = 10
RELAY_ROUND_TRIPS = 1
RELAY_STATEMENTS = 1


def test_a_warm_accept_sends_one_statement_and_two_redis_commands_the_relay_one_of_each_per_send(
        app, client, funded):
    from hub.bus.relay import BackgroundRelay

    assert client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/hook"},
                      headers=funded.tenant.headers).status_code == 200
    engine = app.extensions["rop"].db.engine
    pool = app.extensions["rop"].redis.connection_pool
    pool.disconnect()
    pool.connection_class = CountingConnection
    pool.reset()
    for n in range(3):  # warm: the catalog, the wallet, the webhook endpoint are cached now
        assert buy(client, funded.tenant, f"08123456780{n}").status_code == 202
    # a web worker's relay, its thread not started: what the requests hand over stays put
    relay = app.extensions["rop"].extras["bus.background_relay"] = BackgroundRelay(app)
    CountingConnection.sent = []
    with Statements(engine) as sent:
        answer = buy(client, funded.tenant, "081234567809")
    assert answer.status_code == 202, answer.json
    commands = [line for trip in CountingConnection.sent for line in trip]
    print(f"\nSQL per warm accept: {len(sent.sent)}:\n  " + "\n  ".join(s[:120] for s in sent.sent)
          + f"\nRedis: {len(CountingConnection.sent)} round trips, {len(commands)} commands")
    # the request: the function's call, in autocommit (no BEGIN, no COMMIT); nothing after it
    assert [s[:27] for s in sent.sent] == ["SELECT rop_accept_v2(%s::js"], sent.sent
    assert len(commands) <= REDIS_COMMANDS, commands
    assert relay.pending() == 1 + 2  # the ProcessTransaction command; deliveries of two events

    for n in range(PURCHASES_PER_SEND - 1):
        assert buy(client, funded.tenant, f"08123456781{n}").status_code == 202
    redis = app.extensions["rop"].redis
    jobs_before = redis.llen("rq:queue:provider")  # the warm-up's, relayed by their requests
    CountingConnection.sent = []
    with Statements(engine) as sent:
        assert relay.send_once() == 3 * PURCHASES_PER_SEND
    print(f"relay, {PURCHASES_PER_SEND} purchases: {len(CountingConnection.sent)} Redis round trips, "
          f"SQL {sent.sent}")
    assert len(CountingConnection.sent) == RELAY_ROUND_TRIPS, CountingConnection.sent
    assert len(sent.sent) == RELAY_STATEMENTS and sent.sent[0].startswith("UPDATE bus_outbox SET published_at")
    # one batch job carries the purchases' commands; their outbox rows are published
    assert redis.llen("rq:queue:provider") == jobs_before + 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bus_outbox WHERE published_at IS NULL")).scalar() == 0
