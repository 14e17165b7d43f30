"""The hub's built-in behaviour, registered through the same hooks as any plugin, with
``trylast=True`` so a plugin can override each answer."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from hub.plugins.markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from hub.plugins.types import ProductView
    from hub.providers.client import Route

#: Indonesian mobile prefixes (after the leading 0) per operator.
MOBILE_PREFIXES: dict[str, tuple[str, ...]] = {
    "telkomsel": ("811", "812", "813", "821", "822", "823", "851", "852", "853"),
    "indosat": ("814", "815", "816", "855", "856", "857", "858"),
    "xl": ("817", "818", "819", "859", "877", "878"),
    "axis": ("831", "832", "833", "837", "838"),
    "tri": ("895", "896", "897", "898", "899"),
    "smartfren": ("881", "882", "883", "884", "885", "886", "887", "888", "889"),
}
MOBILE_TYPES = {"pulsa", "data", "mobile", "ewallet"}
_MOBILE = re.compile(r"^(?:\+?62|0)(8\d{7,11})$")


def normalize_msisdn(number: str) -> str | None:
    """``+62812...``/``62812...``/``0812...`` → ``0812...``; None when not a mobile number."""
    match = _MOBILE.match(re.sub(r"[\s-]", "", number))
    return "0" + match.group(1) if match else None


@hookimpl(trylast=True)
def validate_customer_number(product_type: str, operator: str | None, customer_no: str) -> str | None:
    kind = (product_type or "").lower()
    if kind in MOBILE_TYPES:
        msisdn = normalize_msisdn(customer_no)
        if msisdn is None:
            return "not an Indonesian mobile number (08xx, 10-13 digits)"
        prefixes = MOBILE_PREFIXES.get((operator or "").lower())
        if kind != "ewallet" and prefixes and msisdn[1:4] not in prefixes:
            return f"number prefix {msisdn[:4]} is not a {operator} number"
        return ""
    if kind in {"pln", "pln_postpaid"} or (operator or "").lower() == "pln":
        if not re.fullmatch(r"\d{11,12}", customer_no or ""):
            return "PLN meter/customer numbers have 11 or 12 digits"
        return ""
    return None


@hookimpl(trylast=True)
def route_transaction(ctx, product_code: str, candidates: list[Route]) -> list[Route]:
    def key(c: Any):
        health = getattr(c, "health", None) or {}
        rate = health.get("success_rate") if isinstance(health, dict) else None
        return (getattr(c, "cost", 0), getattr(c, "priority", 0), -(rate if rate is not None else 1.0))

    return sorted(candidates, key=key)


@hookimpl(trylast=True)
def price_product(tenant_id: str, product_code: str, cost: int, currency: str, product: ProductView) -> int:
    margin = getattr(product, "margin", None)
    if margin is None and isinstance(product, dict):
        margin = product.get("margin")
    return cost + int(margin or 0)
