"""A Digiflazz connector: md5-signed JSON POSTs, status by re-sending the same
``ref_id``, postpaid inquiry/pay, HMAC-SHA1 signed webhooks, and every rc mapped explicitly.

Signatures: ``md5(username + api_key + X)``, X = the ``ref_id`` for transactions,
``"depo"`` for the deposit, ``"pricelist"`` for the price list. Webhooks carry
``X-Hub-Signature: sha1=<hmac-sha1(webhook_secret, raw body)>``. Digiflazz types loosely
(numbers arrive as strings or numbers): every field is read through :func:`_int`/``str``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields

from hub import hookimpl
from hub.providers.contract import (
    CallbackRejected,
    Capability,
    CatalogItem,
    CatalogUnavailable,
    InquiryRequest,
    Provider,
    ProviderResult,
    PurchaseRequest,
    State,
    StatusRequest,
)
from hub.providers.http import ProviderHttpError, failure_result, provider_http, read_json


def _codes(states: dict[State, list[int | str]]) -> dict[str, State]:
    table: dict[str, State] = {}
    for state, codes in states.items():
        for code in codes:
            table[f"{code:02d}" if isinstance(code, int) else code] = state
    return table


#: Digiflazz rc → normalized state, code by code, from Digiflazz's rc list. Codes not listed → unknown.
CODE_TABLE: dict[str, State] = _codes({
    State.SUCCESS: [0],
    State.UNKNOWN: [1],  # "Timeout": listed so nobody maps it by accident
    State.PENDING: [3, 99],
    # refused before a transaction existed: the next provider may be tried
    State.REJECTED: [*range(40, 50), *range(61, 70), 80, 81, 82, 83, 87, 88],
    # a transaction existed and failed for good (52 prefix mismatch, 58 cut-off, 74 refund)
    State.FAILED: [2, *range(50, 61), *range(70, 75), 84, 85, 86],  # 02 "Transaksi Gagal"
})

#: rc codes (of the rejected range) that refuse a *request* before Digiflazz looks its
#: ``ref_id`` up: payload error (40), bad signature or wrong key for the mode (41), the
#: buyer's API could not be processed (42), IP not allowed (45), the ``ref_id`` belongs to
#: another purchase (49), the account is not verified (82), rate limited (83). To a status
#: check they say nothing about the purchase: they stay REJECTED, which the hub reads, for
#: a status check, as "the check was refused" (the outcome stays unknown, checked again).
REQUEST_REFUSED: frozenset[str] = frozenset({"40", "41", "42", "45", "49", "82", "83"})


class DigiflazzSettings(Schema):
    username = fields.String(required=True, metadata={"secret": True})  # a credential, as the API key
    api_key = fields.String(required=True, metadata={"secret": True})
    webhook_secret = fields.String(load_default=None, allow_none=True, metadata={"secret": True})
    base_url = fields.String(load_default="https://api.digiflazz.com")
    testing = fields.Boolean(load_default=False)
    max_price = fields.Integer(load_default=None, allow_none=True)
    timeout = fields.Float(load_default=30.0)


def sign(username: str, api_key: str, word: str) -> str:
    return hashlib.md5(f"{username}{api_key}{word}".encode()).hexdigest()


def webhook_signature(secret: str, body: bytes) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(float(str(value).replace(",", "")))
    except ValueError:
        return None


class DigiflazzProvider(Provider):
    code = "digiflazz"
    name = "Digiflazz"
    version = "0.1.0"
    capabilities = frozenset({Capability.PREPAID, Capability.POSTPAID, Capability.CALLBACKS,
                              Capability.BALANCE, Capability.CATALOG})
    settings_schema = DigiflazzSettings
    code_table = CODE_TABLE
    callback_secret_setting = "webhook_secret"

    def __init__(self, config):
        super().__init__(config)
        schema = DigiflazzSettings()
        self.opts = schema.load({k: v for k, v in self.settings.items() if k in schema.fields})

    # -- transport ---------------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any],
              operation: str) -> tuple[Any, ProviderResult | None]:
        """POST; return (data, None) or (None, a result saying why there is no answer).
        Digiflazz answers errors with HTTP 400 and its own JSON (rc): those are answers."""
        url = self.opts["base_url"].rstrip("/") + path
        try:
            response = provider_http().post(url, json=body, allow_private=self.config.allow_private,
                                            timeout=self.opts["timeout"])
            payload = read_json(response)
        except ProviderHttpError as exc:
            return None, failure_result(exc, operation)
        if not isinstance(payload, dict) or "data" not in payload:
            return None, ProviderResult(State.UNKNOWN, message=f"unreadable answer (HTTP {response.status_code})",
                                        raw=payload, transport_failure=True)
        return payload["data"], None

    def _sign(self, word: str) -> str:
        return sign(self.opts["username"], self.opts["api_key"], word)

    def _result(self, data: Mapping[str, Any], ref_id: str | None = None) -> ProviderResult:
        rc = str(data.get("rc", "")).strip()
        state = self.map_code(rc)
        return ProviderResult(
            state, provider_ref=str(data.get("ref_id") or ref_id or "") or None,
            serial_number=(str(data["sn"]) if data.get("sn") not in (None, "") else None),
            cost=_int(data.get("price")), message=str(data.get("message") or data.get("status") or ""),
            raw=dict(data), ref_id=str(data.get("ref_id") or ref_id or "") or None, provider_code=rc)

    # -- the contract --------------------------------------------------------------------------
    def catalog(self) -> list[CatalogItem]:
        items: list[CatalogItem] = []
        for cmd, postpaid in (("prepaid", False), ("pasca", True)):
            data, failure = self._post("/v1/price-list", {"cmd": cmd, "username": self.opts["username"],
                                                          "sign": self._sign("pricelist")}, "catalog")
            if failure is not None or not isinstance(data, list):
                # Half a catalog would make the hub mark the other half vanished.
                reason = failure.message if failure is not None else "unreadable price list"
                raise CatalogUnavailable(f"{cmd} price list: {reason}")
            for row in data:
                cost = _int(row.get("price")) if not postpaid else _int(row.get("admin"))
                if cost is None or not row.get("buyer_sku_code"):
                    continue
                available = bool(row.get("buyer_product_status", True)) and bool(row.get("seller_product_status", True))
                items.append(CatalogItem(str(row["buyer_sku_code"]), str(row.get("product_name", "")),
                                         str(row.get("category", "")).lower(), str(row.get("brand", "")).lower(),
                                         cost, postpaid=postpaid, available=available, raw=row))
        return items

    def _transaction(self, body: dict[str, Any], ref_id: str, operation: str) -> ProviderResult:
        data, failure = self._post("/v1/transaction", body, operation)
        if failure is not None:
            failure.ref_id = ref_id
            return failure
        if not isinstance(data, dict):
            return ProviderResult(State.UNKNOWN, message="unreadable answer", raw=data, ref_id=ref_id,
                                  transport_failure=True)
        return self._result(data, ref_id)

    def _base(self, ref_id: str, sku: str, customer_no: str) -> dict[str, Any]:
        body = {"username": self.opts["username"], "buyer_sku_code": sku, "customer_no": customer_no,
                "ref_id": ref_id, "sign": self._sign(ref_id)}
        if self.opts["testing"]:
            body["testing"] = True
        return body

    def purchase(self, request: PurchaseRequest) -> ProviderResult:
        body = self._base(request.ref_id, request.sku, request.customer_no)
        if request.amount is not None:  # postpaid: pay the bill of the inquiry with the same ref_id
            body["commands"] = "pay-pasca"
        elif self.opts["max_price"]:
            body["max_price"] = self.opts["max_price"]
        if request.callback_url:
            body["cb_url"] = request.callback_url
        return self._transaction(body, request.ref_id, "purchase")

    def check_status(self, request: StatusRequest) -> ProviderResult:
        """Digiflazz's status check is the same purchase request again, with the same ref_id.

        A status call that gets no answer is UNKNOWN (failure_result), never "not sent, try
        elsewhere". Answered, it is about the purchase: Digiflazz gives back the state of the
        transaction it holds under this ``ref_id``, or, holding none, takes the request as the
        purchase. So a refusal ("Gagal" with a code of the rejected range: product disturbed,
        deposit low, out of stock…) says this reference was refused at the provider — nothing
        was delivered under it, and after this answer nothing will be (the hub sends it no
        more): the purchase FAILED, which releases its hold. Only the codes that refuse the
        request itself, before its ``ref_id`` is looked up (:data:`REQUEST_REFUSED`), say
        nothing about the purchase: they stay REJECTED, which the hub reads, for a status
        check, as "the check was refused" (unknown; docs/plugins.md).
        """
        body = self._base(request.ref_id, request.sku, request.customer_no)
        result = self._transaction(body, request.ref_id, "check_status")
        if result.state is State.REJECTED and result.provider_code not in REQUEST_REFUSED:
            result.state = State.FAILED
        return result

    def inquiry(self, request: InquiryRequest) -> ProviderResult:
        body = {**self._base(request.ref_id, request.sku, request.customer_no), "commands": "inq-pasca"}
        result = self._transaction(body, request.ref_id, "inquiry")
        raw = result.raw if isinstance(result.raw, dict) else {}
        if result.state is State.SUCCESS:
            result.data = {"amount": _int(raw.get("selling_price")) or _int(raw.get("price")),
                           "customer_name": raw.get("customer_name"),
                           "period": (raw.get("desc") or {}).get("detail", [{}])[0].get("periode")
                           if isinstance(raw.get("desc"), dict) else None}
        return result

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> ProviderResult:
        lower = {k.lower(): v for k, v in headers.items()}
        secret = self.opts["webhook_secret"]
        # Without a secret nothing can be verified: read it (the hub treats it as unproven).
        if secret and not hmac.compare_digest(lower.get("x-hub-signature", ""), webhook_signature(secret, body)):
            raise CallbackRejected("bad signature")
        try:
            data = json.loads(body)["data"]
            if not isinstance(data, dict) or not data.get("ref_id"):
                raise ValueError("no ref_id")
        except (ValueError, KeyError, TypeError) as exc:
            raise CallbackRejected(f"unreadable body: {exc}") from exc
        result = self._result(data)
        result.data = {"event": lower.get("x-digiflazz-event"), "delivery": lower.get("x-digiflazz-delivery")}
        return result

    def balance(self) -> ProviderResult:
        data, failure = self._post("/v1/cek-saldo", {"cmd": "deposit", "username": self.opts["username"],
                                                     "sign": self._sign("depo")}, "balance")
        if failure is not None:
            return failure
        deposit = _int((data or {}).get("deposit")) if isinstance(data, dict) else None
        if deposit is None:
            rc = str((data or {}).get("rc", "")) if isinstance(data, dict) else ""
            message = str((data or {}).get("message") or "no deposit") if isinstance(data, dict) else "no deposit"
            return ProviderResult(self.map_code(rc) if rc else State.UNKNOWN, message=message, raw=data,
                                  provider_code=rc or None)
        return ProviderResult(State.SUCCESS, cost=deposit, raw=data)


@hookimpl
def register_providers():
    return [DigiflazzProvider]
