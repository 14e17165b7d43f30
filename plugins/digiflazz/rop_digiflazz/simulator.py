"""A local HTTP simulator of the Digiflazz protocol (for tests and demos).

    with DigiflazzSimulator(username="u", api_key="k", webhook_url=..., webhook_secret="s") as sim:
        sim.url  # http://127.0.0.1:PORT

Implements ``/v1/price-list`` (prepaid and pasca), ``/v1/cek-saldo``, ``/v1/transaction``
(prepaid, status by re-sent ``ref_id``, ``inq-pasca``/``pay-pasca``), signature checks
(rc 41), ``ref_id`` reuse with another number (rc 49), and signed webhooks sent over real
HTTP. Digiflazz's testing-mode numbers: 087800001230 success; …232 failed; …233 pending
then a success webhook; …234 pending then a failure webhook. Other numbers succeed,
except ``fault`` settings: ``fail_next`` (list of HTTP statuses to answer next, e.g. 500),
``slow_next`` (seconds to sleep before the next answer).
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any

from werkzeug.wrappers import Request, Response

from hub.providers.simulators import LiveServer

PRICE_LIST = [
    {"product_name": "XL 10.000", "category": "Pulsa", "brand": "XL", "type": "Umum", "seller_name": "SIM",
     "price": "10200", "buyer_sku_code": "xld10", "buyer_product_status": True,
     "seller_product_status": True, "unlimited_stock": True, "stock": 0, "multi": True},
    {"product_name": "Telkomsel 25.000", "category": "Pulsa", "brand": "TELKOMSEL", "type": "Umum",
     "seller_name": "SIM", "price": 25_150, "buyer_sku_code": "tsel25", "buyer_product_status": True,
     "seller_product_status": True, "unlimited_stock": True, "stock": 0, "multi": True},
    {"product_name": "PLN 20.000", "category": "PLN", "brand": "PLN", "type": "Umum", "seller_name": "SIM",
     "price": "20350", "buyer_sku_code": "pln20", "buyer_product_status": True,
     "seller_product_status": False, "unlimited_stock": True, "stock": 0, "multi": True},
]
PASCA_LIST = [
    {"product_name": "PLN Pascabayar", "category": "Pascabayar", "brand": "PLN PASCABAYAR",
     "seller_name": "SIM", "admin": "2500", "commission": "700", "buyer_sku_code": "pln",
     "buyer_product_status": True, "seller_product_status": True},
]
FAILED_SUFFIX = {"1232": ("02", "Transaksi Gagal")}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class DigiflazzSimulator(LiveServer):
    def __init__(self, username: str = "simuser", api_key: str = "simkey", webhook_url: str | None = None,
                 webhook_secret: str = "simsecret", deposit: int = 5_000_000, callback_delay: float = 0.05,
                 port: int = 0):
        self.username, self.api_key = username, api_key
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.deposit, self.callback_delay = deposit, callback_delay
        self.transactions: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.webhooks_sent: list[dict[str, Any]] = []
        #: the price lists this simulator serves (tests change prices or remove items here)
        self.prepaid_list: list[dict[str, Any]] = copy.deepcopy(PRICE_LIST)
        self.pasca_list: list[dict[str, Any]] = copy.deepcopy(PASCA_LIST)
        self.fail_next: list[int] = []
        self.slow_next = 0.0
        self.lock = threading.Lock()
        super().__init__(self.wsgi, port=port)

    # -- HTTP ----------------------------------------------------------------------------------
    def wsgi(self, environ, start_response):
        request = Request(environ)
        if self.slow_next:
            delay, self.slow_next = self.slow_next, 0.0
            time.sleep(delay)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return Response("<html>upstream error</html>", status=status)(environ, start_response)
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            return self._json({"data": {"rc": "40", "message": "Payload Error"}}, 400)(environ, start_response)
        self.requests.append({"path": request.path, "body": body})
        handler = {"/v1/price-list": self.price_list, "/v1/cek-saldo": self.balance,
                   "/v1/transaction": self.transaction}.get(request.path)
        if handler is None:
            return self._json({"data": {"rc": "40", "message": "Not found"}}, 404)(environ, start_response)
        payload, status = handler(body)
        return self._json({"data": payload}, status)(environ, start_response)

    @staticmethod
    def _json(payload: Any, status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, mimetype="application/json")

    def _signed(self, body: dict, word: str) -> bool:
        return body.get("username") == self.username and body.get("sign") == _md5(self.username + self.api_key + word)

    # -- operations ----------------------------------------------------------------------------
    def price_list(self, body: dict):
        if not self._signed(body, "pricelist"):
            return {"rc": "41", "message": "Signature Anda salah"}, 400
        return (self.pasca_list if body.get("cmd") == "pasca" else self.prepaid_list), 200

    def balance(self, body: dict):
        if not self._signed(body, "depo"):
            return {"rc": "41", "message": "Signature Anda salah"}, 400
        return {"deposit": self.deposit}, 200

    def transaction(self, body: dict):
        ref_id = str(body.get("ref_id", ""))
        if not ref_id or not self._signed(body, ref_id):
            return {"ref_id": ref_id, "rc": "41", "status": "Gagal", "message": "Signature Anda salah"}, 400
        sku, number = str(body.get("buyer_sku_code", "")), str(body.get("customer_no", ""))
        commands = body.get("commands")
        with self.lock:
            existing = self.transactions.get(ref_id)
            if existing is not None and commands != "pay-pasca":
                if existing["customer_no"] != number or existing["buyer_sku_code"] != sku:
                    return {"ref_id": ref_id, "rc": "49", "status": "Gagal",
                            "message": "Ref ID tidak unik"}, 400
                return dict(existing), 200  # status check: the same request again
            if commands == "inq-pasca":
                record = self._record(ref_id, sku, number, "00", "Sukses", "Inquiry sukses", price=52_500,
                                      selling_price=53_200, customer_name="SIMULATED CUSTOMER",
                                      desc={"detail": [{"periode": "202611", "nilai_tagihan": "50000",
                                                        "admin": "2500"}]})
                return dict(record), 200
            if commands == "pay-pasca":
                if existing is None:
                    return {"ref_id": ref_id, "rc": "60", "status": "Gagal",
                            "message": "Tagihan belum tersedia"}, 200
                existing.update(rc="00", status="Sukses", message="Pembayaran sukses", sn=uuid.uuid4().hex[:12])
                return dict(existing), 200
            item = next((p for p in self.prepaid_list if p["buyer_sku_code"] == sku), None)
            if item is None:
                return {"ref_id": ref_id, "rc": "40", "status": "Gagal",
                        "message": "SKU tidak ditemukan"}, 400
            if not item["seller_product_status"]:
                return {"ref_id": ref_id, "rc": "80", "status": "Gagal",
                        "message": "Produk sedang gangguan"}, 200
            price = int(item["price"])
            suffix = number[-4:]
            if suffix in FAILED_SUFFIX:
                rc, message = FAILED_SUFFIX[suffix]
                record = self._record(ref_id, sku, number, rc, "Gagal", message, price=price)
            elif suffix in {"1233", "1234"}:
                record = self._record(ref_id, sku, number, "03", "Pending", "Transaksi Pending", price=price)
                final = ("00", "Sukses", "Transaksi Sukses") if suffix == "1233" else \
                    ("52", "Gagal", "Nomor tujuan tidak sesuai operator")
                timer = threading.Timer(self.callback_delay, self._complete, args=(ref_id, *final))
                timer.daemon = True
                timer.start()
            else:
                self.deposit -= price
                record = self._record(ref_id, sku, number, "00", "Sukses", "Transaksi Sukses", price=price,
                                      sn=f"{uuid.uuid4().int % 10**20:020d}")
            return dict(record), 200

    def _record(self, ref_id, sku, number, rc, status, message, *, price, sn="", **extra) -> dict:
        record = {"ref_id": ref_id, "customer_no": number, "buyer_sku_code": sku, "message": message,
                  "status": status, "rc": rc, "sn": sn, "buyer_last_saldo": self.deposit,
                  "price": str(price), "tele": "@simulator", "wa": "", **extra}
        self.transactions[ref_id] = record
        return record

    def _complete(self, ref_id: str, rc: str, status: str, message: str) -> None:
        with self.lock:
            record = self.transactions[ref_id]
            record.update(rc=rc, status=status, message=message,
                          sn=f"{uuid.uuid4().int % 10**20:020d}" if rc == "00" else "")
            payload = dict(record)
        self.send_webhook(payload)

    def send_webhook(self, data: dict, event: str = "update", secret: str | None = None) -> None:
        if not self.webhook_url:
            return
        import httpx

        raw = json.dumps({"data": data}).encode()
        signature = "sha1=" + hmac.new((secret or self.webhook_secret).encode(), raw, hashlib.sha1).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature": signature,
                   "X-Digiflazz-Event": event, "X-Digiflazz-Delivery": uuid.uuid4().hex,
                   "User-Agent": "Digiflazz-Hookshot"}
        try:
            response = httpx.post(self.webhook_url, content=raw, headers=headers, timeout=5)
            self.webhooks_sent.append({"data": data, "status": response.status_code})
        except httpx.HTTPError as exc:
            self.webhooks_sent.append({"data": data, "error": str(exc)})
