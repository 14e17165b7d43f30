"""A provider that remembers: the Digiflazz protocol over HTTP, every request in a SQLite file.

The fault suite (``bench/chaos.py``) runs it as a process of its own, beside the hub, so
that what it received outlives every fault the suite causes in the hub (Redis, PostgreSQL,
the hub's processes). The hub reaches it through the Digiflazz plugin (a provider
configuration whose ``base_url`` points here); its webhooks go to the configuration's
callback URL.

    .venv/bin/python bench/provider_sim.py --db sim.sqlite --port 8123 \\
        --webhook-url http://127.0.0.1:5000/callbacks/digiflazz/pcf_… [--latency 0.3]

The protocol is Digiflazz's (``plugins/digiflazz``): md5-signed JSON POSTs to
``/v1/transaction``, ``/v1/price-list``, ``/v1/cek-saldo``; **a status check is the same
purchase request again with the same** ``ref_id``: a reference seen before gets its record
back, whatever it says now; a reference never seen is a new purchase, as at Digiflazz (there
is no "not found" in this protocol: the plugin cannot tell the two requests apart, nor can
the provider). HMAC-SHA1 signed webhooks (``X-Hub-Signature``) are queued in the file and
delivered until the hub answers 2xx (backoff 0.5 s doubling to 10 s).

The last four digits of ``customer_no`` choose the outcome, as the sandbox's test numbers do:

====== ===============================================================================
9999   failed (rc 02)
4444   rejected before a transaction existed (rc 80, product disturbed)
8888   pending (rc 03), then success by webhook after ``--callback-delay``
7777   pending (rc 03), then failure by webhook (rc 02)
6666   delivered, but the answer is lost (HTTP 502): a status check says success
5555   failed, but the answer is lost (HTTP 502): a status check says failure
3333   success, then refunded by webhook (rc 74)
2222   the first request of a reference is lost on the way (HTTP 502, never received:
       recorded in ``dropped`` only); the next one, the hub's status check, is the first
       the provider receives, and buys it (success)
other  success
====== ===============================================================================

Tables (the file is the proof; read it with sqlite3 or :func:`report`):
``purchases`` one row per reference received (its first request made it: ``received_at``),
with its state now; ``requests`` every ``/v1/transaction`` request, ``kind`` ``purchase``
(the first of its reference) or ``status`` (a repeat); ``webhooks`` what was sent back;
``dropped`` the requests lost before they arrived (2222).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from rop_digiflazz.plugin import webhook_signature
from rop_digiflazz.simulator import DigiflazzSimulator

#: What the simulator sells (Digiflazz's price-list shape). Prices in IDR.
PRICE_LIST = [
    {"product_name": "Telkomsel 10.000", "category": "Pulsa", "brand": "TELKOMSEL", "type": "Umum",
     "seller_name": "SIM", "price": 10_150, "buyer_sku_code": "tsel10", "buyer_product_status": True,
     "seller_product_status": True, "unlimited_stock": True, "stock": 0, "multi": True},
]
#: suffix → (state on receipt, rc, message, answer lost, later state, later rc, later message)
OUTCOMES: dict[str, tuple] = {
    "9999": ("failed", "02", "Transaksi Gagal", False, None, None, None),
    "4444": ("rejected", "80", "Produk sedang gangguan", False, None, None, None),
    "8888": ("pending", "03", "Transaksi Pending", False, "success", "00", "Transaksi Sukses"),
    "7777": ("pending", "03", "Transaksi Pending", False, "failed", "02", "Transaksi Gagal"),
    "6666": ("success", "00", "Transaksi Sukses", True, None, None, None),
    "5555": ("failed", "02", "Transaksi Gagal", True, None, None, None),
    "3333": ("success", "00", "Transaksi Sukses", False, "refunded", "74", "Transaksi Refund"),
}
ORDINARY = ("success", "00", "Transaksi Sukses", False, None, None, None)
STATUS_WORD = {"success": "Sukses", "pending": "Pending", "failed": "Gagal", "rejected": "Gagal",
               "refunded": "Gagal"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS purchases (
    ref_id TEXT PRIMARY KEY, sku TEXT NOT NULL, customer_no TEXT NOT NULL, price INTEGER NOT NULL,
    state TEXT NOT NULL, rc TEXT NOT NULL, message TEXT NOT NULL, sn TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL, changed_at REAL NOT NULL,
    later_at REAL, later_state TEXT, later_rc TEXT, later_message TEXT);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, ref_id TEXT NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL, answer TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS requests_ref ON requests (ref_id);
CREATE TABLE IF NOT EXISTS dropped (ref_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (
    id INTEGER PRIMARY KEY, ref_id TEXT NOT NULL, body BLOB NOT NULL, due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, delivered_at REAL, last_answer TEXT);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a record is on disk before the answer leaves
    return conn


def report(path: str | Path) -> dict[str, dict]:
    """What the simulator received, by reference: ``{ref_id: {state, price, purchases,
    status_checks, dropped, received_at}}`` (``purchases`` counts the requests that created
    it: 1; ``dropped``: 1 when a first request of it was lost before it arrived)."""
    conn = connect(path)
    try:
        rows = conn.execute(
            "SELECT p.ref_id, p.state, p.price, p.received_at, "
            "SUM(r.kind = 'purchase'), SUM(r.kind = 'status'), "
            "(SELECT count(*) FROM dropped d WHERE d.ref_id = p.ref_id) "
            "FROM purchases p LEFT JOIN requests r ON r.ref_id = p.ref_id GROUP BY p.ref_id").fetchall()
    finally:
        conn.close()
    return {ref: {"state": state, "price": price, "received_at": at, "purchases": int(bought or 0),
                  "status_checks": int(checks or 0), "dropped": int(dropped)}
            for ref, state, price, at, bought, checks, dropped in rows}


def pending(path: str | Path) -> int:
    """Later outcomes not applied yet, and webhooks not delivered yet (still being retried)."""
    conn = connect(path)
    try:
        return conn.execute(
            "SELECT (SELECT count(*) FROM purchases WHERE later_at IS NOT NULL) + "
            "(SELECT count(*) FROM webhooks WHERE delivered_at IS NULL AND attempts < 60)").fetchone()[0]
    finally:
        conn.close()


class ProviderSimulator(DigiflazzSimulator):
    """The plugin's simulator (HTTP, signatures, price list, balance) with the transactions,
    their later outcomes and the webhooks kept in a SQLite file instead of memory."""

    def __init__(self, db: str | Path, *, port: int = 0, username: str = "chaos", api_key: str = "chaos-key",
                 webhook_url: str | None = None, webhook_secret: str = "chaos-webhook",
                 latency: float = 0.0, callback_delay: float = 0.5):
        super().__init__(username=username, api_key=api_key, webhook_url=webhook_url,
                         webhook_secret=webhook_secret, deposit=10**12, callback_delay=callback_delay, port=port)
        self.prepaid_list, self.pasca_list = PRICE_LIST, []
        self.conn = connect(db)
        self.conn.executescript(SCHEMA)
        self.latency = latency
        self.stopping = threading.Event()
        self.clock = threading.Thread(target=self._clock, daemon=True)

    def start(self) -> ProviderSimulator:
        self.__enter__()
        self.clock.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.__exit__(None, None, None)

    def wsgi(self, environ, start_response):
        if self.latency and environ.get("PATH_INFO") == "/v1/transaction":
            time.sleep(self.latency)  # the answer takes its time; a caller killed meanwhile never gets it
        return super().wsgi(environ, start_response)

    def transaction(self, body: dict):
        """A purchase, or (same ``ref_id`` again) its status. HTTP 502 without an answer: lost."""
        ref_id = str(body.get("ref_id", ""))
        if not ref_id or not self._signed(body, ref_id):
            return {"ref_id": ref_id, "rc": "41", "status": "Gagal", "message": "Signature Anda salah"}, 400
        sku, number = str(body.get("buyer_sku_code", "")), str(body.get("customer_no", ""))
        now = time.time()
        with self.lock:
            row = self._row(ref_id)
            if row is not None:
                if row["customer_no"] != number or row["sku"] != sku:
                    self._log(ref_id, "status", "49", now)
                    return {"ref_id": ref_id, "rc": "49", "status": "Gagal", "message": "Ref ID tidak unik"}, 400
                self._log(ref_id, "status", row["rc"], now)
                return self._answer(row), 200
            item = next((p for p in PRICE_LIST if p["buyer_sku_code"] == sku), None)
            if item is None:  # refused before any record: nothing to remember
                return {"ref_id": ref_id, "rc": "40", "status": "Gagal", "message": "SKU tidak ditemukan"}, 400
            if number.endswith("2222") and self.conn.execute(
                    "INSERT OR IGNORE INTO dropped (ref_id, at) VALUES (?, ?)", (ref_id, now)).rowcount:
                return None, 502  # lost on the way: as if it never arrived
            state, rc, message, lost, later_state, later_rc, later_message = OUTCOMES.get(number[-4:], ORDINARY)
            sn = self._sn(ref_id) if state == "success" else ""
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO purchases (ref_id, sku, customer_no, price, state, rc, message, sn, received_at, "
                "changed_at, later_at, later_state, later_rc, later_message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (ref_id, sku, number, int(item["price"]), state, rc, message, sn, now, now,
                 now + self.callback_delay if later_state else None, later_state, later_rc, later_message))
            self.conn.execute("INSERT INTO requests (ref_id, kind, at, answer) VALUES (?, 'purchase', ?, ?)",
                              (ref_id, now, "502" if lost else rc))
            self.conn.execute("COMMIT")
            if lost:
                return None, 502  # {"data": null}: the plugin reads an unknown outcome
            return self._answer(self._row(ref_id)), 200

    def _row(self, ref_id: str) -> dict | None:
        cursor = self.conn.execute("SELECT * FROM purchases WHERE ref_id = ?", (ref_id,))
        found = cursor.fetchone()
        return dict(zip([c[0] for c in cursor.description], found)) if found else None

    def _log(self, ref_id: str, kind: str, answer: str, now: float) -> None:
        self.conn.execute("INSERT INTO requests (ref_id, kind, at, answer) VALUES (?, ?, ?, ?)",
                          (ref_id, kind, now, answer))

    @staticmethod
    def _sn(ref_id: str) -> str:
        return str(int(hashlib.sha256(ref_id.encode()).hexdigest()[:16], 16))[:20]

    def _answer(self, row: dict) -> dict:
        return {"ref_id": row["ref_id"], "customer_no": row["customer_no"], "buyer_sku_code": row["sku"],
                "message": row["message"], "status": STATUS_WORD[row["state"]], "rc": row["rc"], "sn": row["sn"],
                "buyer_last_saldo": self.deposit, "price": row["price"], "tele": "@simulator", "wa": ""}

    # -- later outcomes and webhooks -----------------------------------------------------------
    def _clock(self) -> None:
        """Apply the later outcomes that are due (each queues a webhook); deliver due webhooks."""
        while not self.stopping.wait(0.05):
            try:
                self._apply_due()
                self._deliver_due()
            except Exception as exc:  # noqa: BLE001 - keep the clock running; say what broke
                print(f"provider_sim: clock: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def _apply_due(self) -> None:
        now = time.time()
        with self.lock:
            due = self.conn.execute("SELECT ref_id FROM purchases WHERE later_at <= ?", (now,)).fetchall()
            for (ref_id,) in due:
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.execute(
                    "UPDATE purchases SET state = later_state, rc = later_rc, message = later_message, "
                    "sn = CASE WHEN later_state = 'success' THEN ? ELSE sn END, changed_at = ?, later_at = NULL "
                    "WHERE ref_id = ?", (self._sn(ref_id), now, ref_id))
                body = json.dumps({"data": self._answer(self._row(ref_id))}).encode()
                self.conn.execute("INSERT INTO webhooks (ref_id, body, due_at) VALUES (?, ?, ?)", (ref_id, body, now))
                self.conn.execute("COMMIT")

    def _deliver_due(self) -> None:
        if not self.webhook_url:
            return
        with self.lock:
            due = self.conn.execute("SELECT id, body, attempts FROM webhooks WHERE delivered_at IS NULL "
                                    "AND due_at <= ? AND attempts < 60 ORDER BY id LIMIT 20", (time.time(),)).fetchall()
        for webhook_id, body, attempts in due:
            headers = {"Content-Type": "application/json",
                       "X-Hub-Signature": webhook_signature(self.webhook_secret, body),
                       "X-Digiflazz-Event": "update", "X-Digiflazz-Delivery": uuid.uuid4().hex,
                       "User-Agent": "Digiflazz-Hookshot"}
            try:
                answer = str(httpx.post(self.webhook_url, content=body, headers=headers, timeout=5).status_code)
            except httpx.HTTPError as exc:
                answer = type(exc).__name__
            now = time.time()
            with self.lock:
                if answer.startswith("2"):
                    self.conn.execute("UPDATE webhooks SET attempts = ?, delivered_at = ?, last_answer = ? "
                                      "WHERE id = ?", (attempts + 1, now, answer, webhook_id))
                else:
                    self.conn.execute("UPDATE webhooks SET attempts = ?, due_at = ?, last_answer = ? WHERE id = ?",
                                      (attempts + 1, now + min(0.5 * 2 ** attempts, 10.0), answer, webhook_id))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="the SQLite file of its records (created if missing)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--username", default="chaos")
    parser.add_argument("--api-key", default="chaos-key")
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default="chaos-webhook")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering a transaction")
    parser.add_argument("--callback-delay", type=float, default=0.5, help="seconds until a later outcome")
    args = parser.parse_args(argv)
    sim = ProviderSimulator(args.db, port=args.port, username=args.username, api_key=args.api_key,
                            webhook_url=args.webhook_url, webhook_secret=args.webhook_secret,
                            latency=args.latency, callback_delay=args.callback_delay).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"provider_sim: serving on {sim.url} (records: {args.db})", flush=True)
    stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
