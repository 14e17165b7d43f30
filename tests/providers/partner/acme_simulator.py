"""A simulator of "Acme", a JSON provider as partners meet them: HMAC-signed requests, orders
that go pending and settle by a signed callback, a status call that answers 404 for an
order it never received, and one reference per order (sending a reference again returns
the order, never buys twice).

    POST /v2/orders            {"reference", "product", "destination", "callback_url"}
    GET  /v2/orders/{reference}
    GET  /v2/products
    GET  /v2/balance

Requests carry ``X-Api-Key`` and ``X-Signature: hex(hmac-sha256(api_secret, METHOD + path + body))``.
Answers: ``{"order": {"reference", "id", "status": "SUCCESS|PENDING|FAILED", "code", "sn",
"price", "message"}}``; errors ``{"error": {"code", "message"}}`` with HTTP 4xx.
Callbacks: ``POST callback_url`` with ``{"event": "order.updated", "order": {...}}`` and
``X-Acme-Signature: sha256=hex(hmac-sha256(callback_secret, body))``.
Numbers: ending 0002 fail (``INVALID_DESTINATION``), 0003 go pending then succeed by
callback, 0004 go pending then fail by callback; others succeed.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from typing import Any

import httpx
from werkzeug.wrappers import Request, Response

from hub.providers.simulators import LiveServer

PRODUCTS = {"PULSA10": ("Pulsa 10,000", "pulsa", "telkomsel", 10_250),
            "PLN20": ("PLN token 20,000", "pln", "pln", 20_500)}


def request_signature(secret: str, method: str, path: str, body: bytes) -> str:
    return hmac.new(secret.encode(), method.encode() + path.encode() + body, hashlib.sha256).hexdigest()


def callback_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AcmeSimulator(LiveServer):
    def __init__(self, api_key: str = "key", api_secret: str = "secret", callback_secret: str = "cbsecret",
                 callback_delay: float = 0.05, balance: int = 5_000_000,
                 products: dict[str, tuple[str, str, str, int]] | None = None):
        self.api_key, self.api_secret, self.callback_secret = api_key, api_secret, callback_secret
        self.callback_delay, self.balance = callback_delay, balance
        self.orders: dict[str, dict[str, Any]] = {}
        self.products = dict(products or PRODUCTS)
        self.lock = threading.Lock()
        super().__init__(self.wsgi)

    @staticmethod
    def _json(payload: Any, status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, mimetype="application/json")

    def _error(self, status: int, code: str, message: str) -> Response:
        return self._json({"error": {"code": code, "message": message}}, status)

    def wsgi(self, environ, start_response):
        request = Request(environ)
        body = request.get_data()
        expected = request_signature(self.api_secret, request.method, request.path, body)
        if request.headers.get("X-Api-Key") != self.api_key or \
                not hmac.compare_digest(request.headers.get("X-Signature", ""), expected):
            response = self._error(401, "INVALID_SIGNATURE", "bad key or signature")
        elif request.method == "POST" and request.path == "/v2/orders":
            response = self.create(json.loads(body or b"{}"))
        elif request.method == "GET" and request.path.startswith("/v2/orders/"):
            order = self.orders.get(request.path.rsplit("/", 1)[1])
            response = self._json({"order": order}) if order else \
                self._error(404, "ORDER_NOT_FOUND", "no order with this reference")
        elif request.path == "/v2/products":
            response = self._json({"products": [{"code": c, "name": n, "category": k, "brand": b, "price": p}
                                                 for c, (n, k, b, p) in self.products.items()]})
        elif request.path == "/v2/balance":
            response = self._json({"balance": self.balance})
        else:
            response = self._error(404, "NOT_FOUND", "no such endpoint")
        return response(environ, start_response)

    def create(self, data: dict[str, Any]) -> Response:
        reference, product, destination = data.get("reference"), data.get("product"), str(data.get("destination"))
        with self.lock:
            existing = self.orders.get(reference)
            if existing is not None:
                if existing["destination"] != destination or existing["product"] != product:
                    return self._error(409, "DUPLICATE_REFERENCE", "reference used for another order")
                return self._json({"order": existing})
            if product not in self.products:
                return self._error(422, "PRODUCT_UNAVAILABLE", "unknown or unavailable product")
            order = {"reference": reference, "id": "ACM-" + uuid.uuid4().hex[:10], "product": product,
                     "destination": destination, "price": self.products[product][3], "sn": None}
            ending = destination[-4:]
            if ending == "0002":
                order.update(status="FAILED", code="INVALID_DESTINATION", message="invalid destination")
            elif ending in ("0003", "0004"):
                order.update(status="PENDING", code="PROCESSING", message="processing")
                timer = threading.Timer(self.callback_delay, self._settle,
                                        args=(reference, ending == "0003", data.get("callback_url")))
                timer.daemon = True
                timer.start()
            else:
                order.update(status="SUCCESS", code="DELIVERED", message="delivered", sn=uuid.uuid4().hex[:16])
                self.balance -= order["price"]
            self.orders[reference] = order
            return self._json({"order": dict(order)}, 201)

    def _settle(self, reference: str, success: bool, callback_url: str | None) -> None:
        with self.lock:
            order = self.orders[reference]
            if success:
                order.update(status="SUCCESS", code="DELIVERED", message="delivered", sn=uuid.uuid4().hex[:16])
            else:
                order.update(status="FAILED", code="OPERATOR_FAILURE", message="failed at the operator")
            payload = json.dumps({"event": "order.updated", "order": dict(order)}).encode()
        if callback_url:
            try:
                httpx.post(callback_url, content=payload, timeout=5,
                           headers={"Content-Type": "application/json", "X-Acme-Event": "order.updated",
                                    "X-Acme-Signature": callback_signature(self.callback_secret, payload)})
            except httpx.HTTPError:
                pass
