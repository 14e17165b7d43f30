"""The sandbox provider: a deterministic simulator for tenants' integration tests.

The last four digits of ``customer_no`` choose the outcome:

====== ===================================================================
9999   failed: invalid customer number (never tried elsewhere)
4444   rejected: out of stock (the next provider may be tried)
8888   pending, then success by callback
7777   pending, then failure by callback
6666   unknown (timeout); a status check says success
5555   unknown (timeout); a status check says failure
3333   success, then refunded by a later callback
2222   unknown (timeout: the request was lost on the way); a status check says
       "not found" (the sandbox never received it)
other  success at once
====== ===================================================================

The sandbox is stateless: ``check_status`` derives the final outcome from the number too.
"Not found" is definitive :attr:`SandboxProvider.not_found_grace` (60) seconds after a
purchase was sent: the hub then releases the hold or tries the next provider.
Callbacks are real HTTP POSTs to the configuration's callback URL, sent from a daemon
``threading.Timer`` after ``callback_delay`` seconds, signed with HMAC-SHA256 of the raw
body under the ``callback_secret`` credential in ``X-Sandbox-Signature``. The credential has
no default: the hub generates one for each configuration it creates; a configuration
without one sends its callbacks unsigned, and the hub only checks the status of their
reference (they cannot be told from a forgery).
Settings: ``latency_ms``, ``callback_delay``, ``fault_rate`` (a fraction of purchases that
answer ``unknown`` as a transport failure: the provider flaking for everyone), ``reject_rate`` (a fraction answered ``rejected``), ``seed``.

Every purchase request is counted per reference (``ref_id``) in the hub's Redis when it runs
inside a hub app, before the simulated latency (so a caller killed mid-call is counted too):
:func:`purchase_count` is how tests prove a reference was never bought twice.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Mapping

from marshmallow import Schema, fields, validate

from hub import hookimpl
from hub.providers.contract import (
    CallbackRejected,
    Capability,
    CatalogItem,
    InquiryRequest,
    Provider,
    ProviderResult,
    PurchaseRequest,
    State,
    StatusRequest,
)
from hub.providers.http import ProviderHttpError, provider_http

SIGNATURE_HEADER = "X-Sandbox-Signature"
PURCHASES_KEY = "rop:sandbox:purchases"


def _hub_redis():
    """The hub's Redis when running inside a hub app, else None (the plugin's own tests)."""
    from flask import current_app, has_app_context

    if not has_app_context() or "rop" not in current_app.extensions:
        return None
    return current_app.extensions["rop"].redis


def purchase_count(redis, ref_id: str) -> int:
    """How many purchase requests the sandbox received with ``ref_id``."""
    return int(redis.hget(PURCHASES_KEY, ref_id) or 0)


def purchase_counts(redis) -> dict[str, int]:
    """Every reference the sandbox was asked to purchase, with its count."""
    return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in redis.hgetall(PURCHASES_KEY).items()}


def _catalog() -> list[CatalogItem]:
    items: list[CatalogItem] = []
    for brand in ("telkomsel", "indosat", "xl"):
        for value in (5_000, 10_000, 20_000, 25_000, 50_000, 100_000):
            items.append(CatalogItem(f"{brand[:3].upper()}{value // 1000}", f"Pulsa {brand.title()} {value:,}",
                                     "pulsa", brand, value + 250 + value // 100))
        for gb, price in ((1, 15_000), (5, 45_000), (15, 95_000)):
            items.append(CatalogItem(f"{brand[:3].upper()}D{gb}", f"Data {brand.title()} {gb} GB", "data",
                                     brand, price))
    for value in (20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000):
        items.append(CatalogItem(f"PLN{value // 1000}", f"Token PLN {value:,}", "pln", "pln", value + 500))
    for brand in ("gopay", "ovo", "dana"):
        for value in (25_000, 50_000, 100_000):
            items.append(CatalogItem(f"{brand.upper()}{value // 1000}", f"{brand.upper()} top-up {value:,}",
                                     "ewallet", brand, value + 1_000))
    items.append(CatalogItem("ML86", "Mobile Legends 86 Diamonds", "game", "mobile legends", 19_500))
    items.append(CatalogItem("FF100", "Free Fire 100 Diamonds", "game", "free fire", 14_800))
    items.append(CatalogItem("PLNPOST", "PLN Postpaid bill", "bill", "pln", 2_500, postpaid=True))
    items.append(CatalogItem("BPJS", "BPJS Kesehatan", "bill", "bpjs", 2_500, postpaid=True))
    return items


CATALOG = {item.sku: item for item in _catalog()}

#: Sandbox outcome codes → normalized states (tests cover every line).
CODE_TABLE: dict[str, State] = {
    "00": State.SUCCESS,
    "01": State.PENDING,
    "40": State.FAILED,      # invalid customer number
    "41": State.REJECTED,    # out of stock
    "42": State.REJECTED,    # unknown SKU
    "50": State.FAILED,      # failed after pending (callback)
    "60": State.REFUNDED,    # reversed after success (callback)
    "44": State.NOT_FOUND,   # status: no transaction under this reference
    "99": State.UNKNOWN,     # timeout
}


class SandboxSettings(Schema):
    callback_secret = fields.String(load_default=None, allow_none=True, metadata={"secret": True})
    latency_ms = fields.Integer(load_default=0, validate=validate.Range(0, 60_000))
    callback_delay = fields.Float(load_default=0.2, validate=validate.Range(0, 3600))
    fault_rate = fields.Float(load_default=0.0, validate=validate.Range(0, 1))
    reject_rate = fields.Float(load_default=0.0, validate=validate.Range(0, 1))
    seed = fields.Integer(load_default=None, allow_none=True)
    balance = fields.Integer(load_default=100_000_000)


#: one schema for every instance (a provider instance is made per call; a schema is reusable)
_SETTINGS = SandboxSettings()
_LOADED: dict[str, dict] = {}
_LOADED_LOCK = threading.Lock()


def _settings(raw: dict) -> dict:
    """The settings loaded through the schema, once per distinct settings: the hub builds an
    instance per call (a batch's purchases are many), and the validation was a tenth of a
    provider worker's CPU at 200 ms end to end. A copy each time (callers may change theirs)."""
    key = json.dumps(raw, sort_keys=True, default=str)
    found = _LOADED.get(key)
    if found is None:
        found = _SETTINGS.load(raw)
        with _LOADED_LOCK:
            if len(_LOADED) >= 256:  # settings changed many times: start again
                _LOADED.clear()
            _LOADED[key] = found
    return dict(found)


def _suffix(customer_no: str) -> str:
    return (customer_no or "")[-4:]


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class SandboxProvider(Provider):
    code = "sandbox"
    name = "ROP Sandbox"
    version = "0.1.0"
    capabilities = frozenset({Capability.PREPAID, Capability.POSTPAID, Capability.CALLBACKS,
                              Capability.BALANCE, Capability.CATALOG})
    settings_schema = SandboxSettings
    code_table = CODE_TABLE
    #: a reference it has not received 60 s after it was sent never arrives
    not_found_grace = 60.0
    #: the sandbox simulates everything in-process (its callbacks aside)
    makes_network_calls = False
    callback_secret_setting = "callback_secret"

    def __init__(self, config):
        super().__init__(config)
        self.opts = _settings({k: v for k, v in self.settings.items() if k in _SETTINGS.fields})
        self.rng = random.Random(self.opts["seed"])

    # -- helpers ---------------------------------------------------------------------------
    def _result(self, code: str, request, *, message: str = "", sn: str | None = None) -> ProviderResult:
        item = CATALOG.get(request.sku)
        state = self.map_code(code)
        raw = {"rc": code, "ref_id": request.ref_id, "customer_no": request.customer_no,
               "sku": request.sku, "sn": sn, "message": message}
        return ProviderResult(state, provider_ref=f"SBX-{request.ref_id}", serial_number=sn,
                              cost=item.cost if item and state in {State.SUCCESS, State.PENDING} else None,
                              message=message, raw=raw, ref_id=request.ref_id, provider_code=code)

    @staticmethod
    def _sn(request) -> str:
        digest = hashlib.sha256(f"{request.ref_id}:{request.customer_no}".encode()).hexdigest()
        if (CATALOG.get(request.sku) or CatalogItem("", "", "", "", 0)).category == "pln":
            return "-".join(str(int(digest[i:i + 8], 16))[:4] for i in range(0, 40, 8))
        return digest[:20].upper()

    def _sleep(self) -> None:
        if self.opts["latency_ms"]:
            time.sleep(self.opts["latency_ms"] / 1000)

    def _callback(self, request, code: str, sn: str | None, message: str) -> None:
        url = self.config.callback_url
        if not url:
            return
        body = json.dumps({"ref_id": request.ref_id, "rc": code, "sn": sn, "message": message,
                           "customer_no": request.customer_no, "sku": request.sku}).encode()
        headers = {"Content-Type": "application/json"}
        if self.opts["callback_secret"]:
            headers[SIGNATURE_HEADER] = sign(self.opts["callback_secret"], body)
        allow_private = self.config.allow_private

        def send() -> None:
            try:
                provider_http().post(url, content=body, headers=headers, allow_private=allow_private,
                                     timeout=10)
            except ProviderHttpError:
                pass  # a real provider would retry; the hub's status checks cover it

        timer = threading.Timer(self.opts["callback_delay"], send)
        timer.daemon = True
        timer.start()

    # -- the contract ----------------------------------------------------------------------
    def catalog(self) -> list[CatalogItem]:
        return list(CATALOG.values())

    def purchase(self, request: PurchaseRequest) -> ProviderResult:
        end = _suffix(request.customer_no)
        if end == "2222":  # lost on the way: never received, so never counted
            self._sleep()
            return self._result("99", request, message="timeout (the request was lost)")
        redis = _hub_redis()
        if redis is not None:
            redis.hincrby(PURCHASES_KEY, request.ref_id, 1)
        self._sleep()
        if request.sku not in CATALOG:
            return self._result("42", request, message="unknown product")
        if end == "9999":
            return self._result("40", request, message="invalid customer number")
        if end == "4444":
            return self._result("41", request, message="out of stock")
        if end in {"6666", "5555"}:
            return self._result("99", request, message="timeout")
        if end == "8888":
            self._callback(request, "00", self._sn(request), "success")
            return self._result("01", request, message="pending")
        if end == "7777":
            self._callback(request, "50", None, "failed at operator")
            return self._result("01", request, message="pending")
        if self.opts["fault_rate"] and self.rng.random() < self.opts["fault_rate"]:
            # A flaky provider, for everyone: a transport failure (the test numbers 6666 and
            # 5555 are about their own purchase instead).
            fault = self._result("99", request, message="random fault: timeout")
            fault.transport_failure = True
            return fault
        if self.opts["reject_rate"] and self.rng.random() < self.opts["reject_rate"]:
            return self._result("41", request, message="random fault: out of stock")
        sn = self._sn(request)
        if end == "3333":
            self._callback(request, "60", sn, "reversed by operator")
        return self._result("00", request, message="success", sn=sn)

    def check_status(self, request: StatusRequest) -> ProviderResult:
        self._sleep()
        end = _suffix(request.customer_no)
        final = {"9999": "40", "4444": "41", "7777": "50", "5555": "50", "3333": "60", "2222": "44"}.get(end, "00")
        sn = self._sn(request) if final in {"00", "60"} else None
        return self._result(final, request, message=STATUS_MESSAGES[final], sn=sn)

    def inquiry(self, request: InquiryRequest) -> ProviderResult:
        self._sleep()
        item = CATALOG.get(request.sku)
        if item is None or not item.postpaid:
            return self._result("42", request, message="not a postpaid product")
        if _suffix(request.customer_no) == "9999":
            return self._result("40", request, message="invalid customer number")
        amount = 50_000 + int(hashlib.sha256(request.customer_no.encode()).hexdigest()[:4], 16) * 10
        result = self._result("00", request, message="bill found")
        result.cost = amount + item.cost
        result.data = {"amount": amount, "admin_fee": item.cost, "customer_name": "SANDBOX CUSTOMER",
                       "period": "2026-11"}
        return result

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ProviderResult:
        secret = self.opts["callback_secret"]
        if secret:  # without one nothing can be verified: read it (the hub treats it as unproven)
            given = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER.lower(), "")
            if not hmac.compare_digest(given, sign(secret, body)):
                raise CallbackRejected("bad signature")
        try:
            data = json.loads(body)
            code = str(data["rc"])
            ref_id = str(data["ref_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CallbackRejected(f"unreadable body: {exc}") from exc
        item = CATALOG.get(str(data.get("sku")))
        return ProviderResult(self.map_code(code), provider_ref=f"SBX-{ref_id}", serial_number=data.get("sn"),
                              cost=item.cost if item else None, message=str(data.get("message") or ""),
                              raw=data, ref_id=ref_id, provider_code=code)

    def balance(self) -> ProviderResult:
        return ProviderResult(State.SUCCESS, cost=self.opts["balance"], message="deposit", raw={})


#: What a status check answers about the purchase, per final code (what happened, as a
#: provider says it; the hub puts it in the transaction's ``error``).
STATUS_MESSAGES = {"00": "success", "40": "invalid customer number", "41": "out of stock",
                   "44": "not found: the purchase never arrived", "50": "failed at operator",
                   "60": "reversed by operator"}


@hookimpl
def register_providers():
    return [SandboxProvider]
