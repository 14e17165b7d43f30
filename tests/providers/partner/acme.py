"""A correct plugin for the Acme JSON protocol (acme_simulator.py), written as the guide says:
every call through the hub's client, ``failure_result`` for every transport failure, the
callback's signature checked over the raw body. broken.py holds five broken versions."""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields

from hub.providers.contract import (
    CallbackRejected,
    Capability,
    CatalogItem,
    CatalogUnavailable,
    Provider,
    ProviderResult,
    PurchaseRequest,
    State,
    StatusRequest,
)
from hub.providers.http import ProviderHttpError, failure_result, provider_http, read_json

CODE_TABLE: dict[str, State] = {
    "DELIVERED": State.SUCCESS,
    "PROCESSING": State.PENDING,
    "INVALID_DESTINATION": State.FAILED,
    "OPERATOR_FAILURE": State.FAILED,
    "PRODUCT_UNAVAILABLE": State.REJECTED,
    "DUPLICATE_REFERENCE": State.REJECTED,
    "INVALID_SIGNATURE": State.REJECTED,
    "ORDER_NOT_FOUND": State.NOT_FOUND,
}


class AcmeSettings(Schema):
    base_url = fields.String(required=True)
    api_key = fields.String(required=True, metadata={"secret": True})
    api_secret = fields.String(required=True, metadata={"secret": True})
    callback_secret = fields.String(required=True, metadata={"secret": True})
    timeout = fields.Float(load_default=15.0)


class AcmeProvider(Provider):
    code = "acme"
    name = "Acme"
    version = "1.0.0"
    capabilities = frozenset({Capability.PREPAID, Capability.CATALOG, Capability.CALLBACKS, Capability.BALANCE})
    settings_schema = AcmeSettings
    code_table = CODE_TABLE
    callback_secret_setting = "callback_secret"
    not_found_grace = 300.0  # Acme: "an order not found 5 minutes after it was sent was never received"

    def __init__(self, config):
        super().__init__(config)
        self.opts = AcmeSettings().load(self.settings)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(HTTP status, JSON answer). :raise ProviderHttpError: no readable answer."""
        content = json.dumps(body).encode() if body is not None else b""
        signature = hmac.new(self.opts["api_secret"].encode(), method.encode() + path.encode() + content,
                             hashlib.sha256).hexdigest()
        response = provider_http().request(
            method, self.opts["base_url"].rstrip("/") + path, content=content or None,
            headers={"X-Api-Key": self.opts["api_key"], "X-Signature": signature,
                     "Content-Type": "application/json"},
            allow_private=self.config.allow_private, timeout=self.opts["timeout"])
        return response.status_code, read_json(response)

    def _order_result(self, status: int, answer: Any, ref_id: str) -> ProviderResult:
        order = answer.get("order") if isinstance(answer, dict) else None
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(order, dict):
            code = str(order.get("code"))
            return ProviderResult(self.map_code(code), provider_ref=order.get("id"), serial_number=order.get("sn"),
                                  cost=order.get("price"), message=str(order.get("message") or ""), raw=answer,
                                  ref_id=ref_id, provider_code=code)
        if isinstance(error, dict):
            code = str(error.get("code"))
            return ProviderResult(self.map_code(code), message=str(error.get("message") or ""), raw=answer,
                                  ref_id=ref_id, provider_code=code)
        return ProviderResult(State.UNKNOWN, message=f"HTTP {status}: no order in the answer", raw=answer,
                              ref_id=ref_id, transport_failure=True)

    def catalog(self) -> list[CatalogItem]:
        try:
            _, answer = self._call("GET", "/v2/products")
            rows = answer["products"]
            return [CatalogItem(r["code"], r["name"], r["category"], r["brand"], int(r["price"]), raw=r)
                    for r in rows]
        except (ProviderHttpError, KeyError, TypeError, ValueError) as exc:
            raise CatalogUnavailable(str(exc)) from exc

    def purchase(self, request: PurchaseRequest) -> ProviderResult:
        try:
            status, answer = self._call("POST", "/v2/orders", {
                "reference": request.ref_id, "product": request.sku, "destination": request.customer_no,
                "callback_url": request.callback_url})
        except ProviderHttpError as exc:
            return failure_result(exc, "purchase")
        result = self._order_result(status, answer, request.ref_id)
        if result.state is State.NOT_FOUND:  # not an answer a purchase can give
            result.state = State.UNKNOWN
        return result

    def check_status(self, request: StatusRequest) -> ProviderResult:
        try:
            status, answer = self._call("GET", f"/v2/orders/{request.ref_id}")
        except ProviderHttpError as exc:
            return failure_result(exc, "check_status")
        result = self._order_result(status, answer, request.ref_id)
        if result.state is State.REJECTED:  # a refused status call is not an answer about the order
            result.state = State.UNKNOWN
        return result

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ProviderResult:
        given = {k.lower(): v for k, v in headers.items()}.get("x-acme-signature", "")
        expected = "sha256=" + hmac.new(self.opts["callback_secret"].encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given, expected):
            raise CallbackRejected("bad signature")
        try:
            order = json.loads(body)["order"]
            return self._order_result(200, {"order": order}, str(order["reference"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CallbackRejected(f"unreadable callback: {exc}") from exc

    def balance(self) -> ProviderResult:
        try:
            _, answer = self._call("GET", "/v2/balance")
        except ProviderHttpError as exc:
            return failure_result(exc, "balance")
        if not isinstance(answer, dict) or not isinstance(answer.get("balance"), int):
            return ProviderResult(State.UNKNOWN, message="no balance in the answer", raw=answer)
        return ProviderResult(State.SUCCESS, cost=answer["balance"], raw=answer)
