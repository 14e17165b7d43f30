"""A minimal purchase *accept* in the hub's stack, for bench/transactions.py's baseline.

The same essential work per request as the hub's ``POST /v1/transactions`` accept, written as
plainly as this stack allows, and run in the same bench run on the same database server:

- Flask, served by gunicorn with the Procfile's web settings (``--workers 2 --threads 8
  --worker-class gthread``);
- the bearer token is one of the hub's own access tokens (HS256 JWT, the hub's secret key),
  verified in process with ``hmac`` (issuer, expiry, tenant) and remembered per process, as the
  hub remembers verified tokens;
- the JSON body is parsed and validated (``ref_id`` 1..64 characters, ``product_code`` in the
  catalog, ``customer_no`` a phone number), the price from a catalog read once per process;
- then ONE round trip: ``SELECT * FROM minimal_accept(...)`` in autocommit, a PL/pgSQL function
  that in one transaction inserts the transaction (unique by (tenant, ref_id): a repeat with
  the same body is a replay (200), with another body a conflict (409)), a timeline row, a hold
  row, an outbox row, and LAST the conditional wallet UPDATE (``available >= price``; else it
  raises and the whole transaction rolls back: 402), so the tenant's wallet row is locked for
  that statement and the commit only;
- one psycopg connection per gunicorn thread (psycopg_pool is not in requirements.lock), so
  8 per process, as many as the threads.

What it does NOT do that the hub does: no client status read (secret rotation, suspension,
scopes), no rate limit (the bench raises the hub's out of the way too), no OpenAPI schema
validation, no offers or price rules, no ledger journal and entries (the hold is one row), no
tenant event store, no webhook look-up, no idempotency-key fingerprint beyond the product and
number, no request id or structured log line, no metrics, no problem+json errors, no enqueue
to Redis and no workers behind it (the hub's workers process its purchases during its accept
window, on the same cores). Its tables (``minimal_*``) live next to the hub's in the bench's
scratch database and share nothing with them.

    MINIMAL_DSN=postgresql://… MINIMAL_SECRET=… gunicorn --chdir bench 'minimal_accept:create_app()'

bench/transactions.py installs its tables (:func:`install`), starts it (:func:`start_web`)
and loads it with the same clients and tokens as the hub.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

NUMBER = re.compile(r"^0\d{9,13}$")

DDL = """
CREATE TABLE minimal_product (code text PRIMARY KEY, price bigint NOT NULL);
CREATE TABLE minimal_wallet (tenant_id text PRIMARY KEY, available bigint NOT NULL, held bigint NOT NULL DEFAULT 0);
CREATE TABLE minimal_trx (id bigserial PRIMARY KEY, tenant_id text NOT NULL, ref_id text NOT NULL,
  fingerprint text NOT NULL, product_code text NOT NULL, customer_no text NOT NULL, price bigint NOT NULL,
  status text NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), UNIQUE (tenant_id, ref_id));
CREATE TABLE minimal_timeline (id bigserial PRIMARY KEY, trx_id bigint NOT NULL, status text NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON minimal_timeline (trx_id);
CREATE TABLE minimal_hold (id bigserial PRIMARY KEY, tenant_id text NOT NULL, trx_id bigint NOT NULL UNIQUE,
  amount bigint NOT NULL, status text NOT NULL DEFAULT 'held', created_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE minimal_outbox (id bigserial PRIMARY KEY, topic text NOT NULL, payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(), published_at timestamptz);
CREATE INDEX minimal_outbox_unpublished ON minimal_outbox (id) WHERE published_at IS NULL;
CREATE FUNCTION minimal_accept(p_tenant text, p_ref text, p_fp text, p_product text, p_customer text,
                               p_price bigint)
RETURNS TABLE (o_outcome text, o_id bigint, o_status text) LANGUAGE plpgsql AS $$
DECLARE v_id bigint; v_fp text; v_status text;
BEGIN
  INSERT INTO minimal_trx (tenant_id, ref_id, fingerprint, product_code, customer_no, price, status)
  VALUES (p_tenant, p_ref, p_fp, p_product, p_customer, p_price, 'pending')
  ON CONFLICT (tenant_id, ref_id) DO NOTHING RETURNING id INTO v_id;
  IF v_id IS NULL THEN  -- the ref_id was used before: a replay (same body) or a conflict
    SELECT id, fingerprint, status INTO v_id, v_fp, v_status FROM minimal_trx
    WHERE tenant_id = p_tenant AND ref_id = p_ref;
    RETURN QUERY SELECT CASE WHEN v_fp = p_fp THEN 'replay' ELSE 'conflict' END, v_id, v_status;
    RETURN;
  END IF;
  INSERT INTO minimal_timeline (trx_id, status) VALUES (v_id, 'pending');
  INSERT INTO minimal_hold (tenant_id, trx_id, amount) VALUES (p_tenant, v_id, p_price);
  INSERT INTO minimal_outbox (topic, payload) VALUES ('transaction.submitted',
    jsonb_build_object('id', v_id, 'tenant_id', p_tenant, 'product_code', p_product, 'customer_no', p_customer));
  -- the tenant's wallet row last: locked for this statement and the commit only
  UPDATE minimal_wallet SET available = available - p_price, held = held + p_price
  WHERE tenant_id = p_tenant AND available >= p_price;
  IF NOT FOUND THEN RAISE EXCEPTION 'insufficient funds' USING ERRCODE = 'MA402'; END IF;
  RETURN QUERY SELECT 'accepted'::text, v_id, 'pending'::text;
END $$;
"""


# -- the web app (gunicorn calls create_app() in each worker) -----------------------------------
def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def create_app():
    import psycopg
    from flask import Flask, Response, request

    dsn, secret = os.environ["MINIMAL_DSN"], os.environ["MINIMAL_SECRET"].encode()
    app = Flask(__name__)
    local = threading.local()  # one autocommit connection per gunicorn thread
    with psycopg.connect(dsn) as conn:
        catalog = dict(conn.execute("SELECT code, price FROM minimal_product").fetchall())
    verified: dict[str, tuple[str, int]] = {}  # token -> (tenant id, expiry), per process

    def connection() -> psycopg.Connection:
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = local.conn = psycopg.connect(dsn, autocommit=True)
        return conn

    def tenant_of(header: str | None) -> str | None:
        if not header or not header.startswith("Bearer "):
            return None
        token = header[7:]
        hit = verified.get(token)
        if hit is None:
            try:
                head, body, signature = token.split(".")
                if json.loads(_b64decode(head)).get("alg") != "HS256":
                    return None
                expected = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
                if not hmac.compare_digest(_b64decode(signature), expected):
                    return None
                claims = json.loads(_b64decode(body))
            except ValueError:
                return None
            if claims.get("iss") != "rop-hub" or not claims.get("tid") or not isinstance(claims.get("exp"), int):
                return None
            hit = verified[token] = (claims["tid"], claims["exp"])
        return hit[0] if hit[1] > time.time() else None

    def answer(body: dict, status: int) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    @app.post("/v1/transactions")
    def purchase():
        tenant = tenant_of(request.headers.get("Authorization"))
        if tenant is None:
            return answer({"error": "unauthorized"}, 401)
        try:
            body = json.loads(request.get_data())
            ref, product, number = body["ref_id"], body["product_code"], body["customer_no"]
        except (ValueError, KeyError, TypeError):
            return answer({"error": "ref_id, product_code and customer_no are required"}, 422)
        if not (isinstance(ref, str) and 0 < len(ref) <= 64):
            return answer({"error": "ref_id: 1 to 64 characters"}, 422)
        price = catalog.get(product) if isinstance(product, str) else None
        if price is None:
            return answer({"error": "unknown product_code"}, 422)
        if not (isinstance(number, str) and NUMBER.match(number)):
            return answer({"error": "customer_no: a phone number"}, 422)
        fingerprint = hashlib.sha256(f"{product}|{number}".encode()).hexdigest()[:32]
        try:
            outcome, trx_id, status = connection().execute(
                "SELECT * FROM minimal_accept(%s, %s, %s, %s, %s, %s)",
                (tenant, ref, fingerprint, product, number, price)).fetchone()
        except psycopg.Error as exc:
            if exc.sqlstate == "MA402":
                return answer({"error": "insufficient funds"}, 402)
            raise
        if outcome == "conflict":
            return answer({"error": "ref_id already used for another request", "id": trx_id}, 409)
        return answer({"id": trx_id, "ref_id": ref, "status": status, "price": price},
                      202 if outcome == "accepted" else 200)

    @app.get("/healthz")
    def healthz():
        return answer({"ok": True}, 200)

    return app


# -- set-up and the server -------------------------------------------------------------------
def install(dsn: str, tenant_ids: list[str], funds: int, catalog: dict[str, int]) -> None:
    """The minimal's tables and function on ``dsn`` (a libpq URL), a funded wallet per tenant."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO minimal_product (code, price) VALUES (%s, %s)", list(catalog.items()))
            cur.executemany("INSERT INTO minimal_wallet (tenant_id, available) VALUES (%s, %s)",
                            [(t, funds) for t in tenant_ids])


def consistent(dsn: str, funds: int) -> bool:
    """Every wallet holds its funds minus its accepted purchases' prices, all of them held."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        bad = conn.execute("""
            SELECT count(*) FROM minimal_wallet w
            LEFT JOIN (SELECT tenant_id, sum(price) AS spent, count(*) AS n FROM minimal_trx GROUP BY tenant_id) t
              USING (tenant_id)
            LEFT JOIN (SELECT tenant_id, sum(amount) AS held, count(*) AS n FROM minimal_hold GROUP BY tenant_id) h
              USING (tenant_id)
            WHERE w.available <> %s - coalesce(t.spent, 0) OR w.held <> coalesce(h.held, 0)
               OR coalesce(t.n, 0) <> coalesce(h.n, 0)""", (funds,)).fetchone()[0]
    return bad == 0


def start_web(dsn: str, secret: str, port: int, *, workers: int = 2, threads: int = 8) -> subprocess.Popen:
    """gunicorn with the Procfile's web settings, serving :func:`create_app` on ``port``."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return subprocess.Popen([gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads",
                             str(threads), "--worker-class", "gthread", "--log-level", "warning",
                             "--chdir", str(Path(__file__).resolve().parent), "minimal_accept:create_app()"],
                            env=dict(os.environ, MINIMAL_DSN=dsn, MINIMAL_SECRET=secret))
