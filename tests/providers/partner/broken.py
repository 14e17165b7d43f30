"""Five broken versions of the Acme plugin, each with one mistake a partner plausibly makes
(and that loses money), and the scaffold's old stub that makes no HTTP call. Two of them do
their HTTP with other clients (httpx directly, urllib): the kit's fault proxy works
whatever the client."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import ClassVar

import httpx

from hub.providers.contract import (
    CallbackRejected,
    CatalogItem,
    Provider,
    ProviderResult,
    PurchaseRequest,
    State,
    StatusRequest,
)
from hub.providers.http import ProviderServerError
from tests.providers.partner.acme import AcmeProvider, AcmeSettings


class StatusRefusedIsRejected(AcmeProvider):
    """1. ``check_status`` answers REJECTED when the status call is refused or the connection
    fails (with urllib): the hub would void a purchase that may have been delivered."""

    def check_status(self, request: StatusRequest) -> ProviderResult:
        path = f"/v2/orders/{request.ref_id}"
        import hashlib
        import hmac

        signature = hmac.new(self.opts["api_secret"].encode(), b"GET" + path.encode(), hashlib.sha256).hexdigest()
        call = urllib.request.Request(self.opts["base_url"].rstrip("/") + path,
                                      headers={"X-Api-Key": self.opts["api_key"], "X-Signature": signature})
        try:
            with urllib.request.urlopen(call, timeout=self.opts["timeout"]) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read())
            except ValueError:
                return ProviderResult(State.UNKNOWN, message=str(exc), transport_failure=True)
        except (urllib.error.URLError, OSError) as exc:
            return ProviderResult(State.REJECTED, message=f"status call failed: {exc}", transport_failure=True)
        except ValueError:
            return ProviderResult(State.UNKNOWN, message="unreadable", transport_failure=True)
        return self._order_result(200, answer, request.ref_id)


class ServerErrorIsFailed(AcmeProvider):
    """2. A 5xx answer to a purchase mapped to FAILED ("the provider said it failed"): the hub
    voids it, though the provider may have bought it."""

    code_table: ClassVar[dict[str, State]] = {**AcmeProvider.code_table, "SERVER_ERROR": State.FAILED}

    def _call(self, method, path, body=None):
        try:
            return super()._call(method, path, body)
        except ProviderServerError as exc:
            return exc.status_code, {"error": {"code": "SERVER_ERROR", "message": f"HTTP {exc.status_code}"}}


class CallbackHeaderPresentIsEnough(AcmeProvider):
    """3. A callback accepted when the signature header is present, without checking its value."""

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ProviderResult:
        if "x-acme-signature" not in {k.lower() for k in headers}:
            raise CallbackRejected("unsigned")
        order = json.loads(body)["order"]
        return self._order_result(200, {"order": order}, str(order["reference"]))


class CatalogSwallowsErrors(AcmeProvider):
    """4. ``catalog()`` swallowing errors into ``[]``."""

    def catalog(self) -> list[CatalogItem]:
        try:
            return super().catalog()
        except Exception:  # noqa: BLE001 - the mistake under test
            return []


class TimeoutIsRejected(AcmeProvider):
    """5. A read timeout after sending mapped to REJECTED (with httpx directly): the hub buys
    at the next provider — a double fulfilment."""

    def purchase(self, request: PurchaseRequest) -> ProviderResult:
        import hashlib
        import hmac

        body = json.dumps({"reference": request.ref_id, "product": request.sku,
                           "destination": request.customer_no, "callback_url": request.callback_url}).encode()
        signature = hmac.new(self.opts["api_secret"].encode(), b"POST/v2/orders" + body, hashlib.sha256).hexdigest()
        try:
            response = httpx.post(self.opts["base_url"].rstrip("/") + "/v2/orders", content=body,
                                  headers={"X-Api-Key": self.opts["api_key"], "X-Signature": signature,
                                           "Content-Type": "application/json"}, timeout=self.opts["timeout"])
            answer = response.json()
        except httpx.TimeoutException as exc:
            return ProviderResult(State.REJECTED, message=f"timeout: {exc}", transport_failure=True)
        except (httpx.HTTPError, ValueError) as exc:
            return ProviderResult(State.UNKNOWN, message=str(exc), transport_failure=True)
        if response.status_code >= 500:
            return ProviderResult(State.UNKNOWN, message=f"HTTP {response.status_code}", transport_failure=True)
        return self._order_result(response.status_code, answer, request.ref_id)


class MemoryStub(Provider):
    """The scaffold's old stub: answers from memory, makes no HTTP call at all."""

    code = "acme"
    name = "Stub"
    capabilities = AcmeProvider.capabilities
    settings_schema = AcmeSettings
    code_table: ClassVar[dict[str, State]] = {"00": State.SUCCESS, "40": State.FAILED}

    def catalog(self) -> list[CatalogItem]:
        return [CatalogItem("PULSA10", "Pulsa 10,000", "pulsa", "telkomsel", 10_250)]

    def purchase(self, request: PurchaseRequest) -> ProviderResult:
        state = State.FAILED if request.customer_no.endswith("0002") else State.SUCCESS
        return ProviderResult(state, provider_ref="stub-" + request.ref_id, raw={}, ref_id=request.ref_id)

    def check_status(self, request: StatusRequest) -> ProviderResult:
        return self.purchase(PurchaseRequest(request.ref_id, request.sku, request.customer_no))

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ProviderResult:
        return ProviderResult(State.SUCCESS, ref_id=json.loads(body)["order"]["reference"])

    def balance(self) -> ProviderResult:
        return ProviderResult(State.SUCCESS, cost=1_000_000)


BROKEN = {
    StatusRefusedIsRejected: "status_refused",
    ServerErrorIsFailed: "purchase_server_error",
    CallbackHeaderPresentIsEnough: "callback_forged",
    CatalogSwallowsErrors: "catalog_errors_raise",
    TimeoutIsRejected: "purchase_timeout",
}
