"""How the admin shows values: money, times, statuses, tenants and provider health.

Every template uses these Jinja filters (registered by :func:`register`), so a value reads the
same on every page:

- ``money(amount, currency)``: ``IDR 1,234,567`` — the integer minor units in the currency's
  whole units with thousands separators (rupiah have no minor unit in the hub: ``10200`` is
  Rp 10,200; a currency with cents, e.g. USD, shows ``USD 12.34``);
- ``when``: a UTC datetime (or ISO string) in the admin's timezone (``ROP_ADMIN_TIMEZONE``,
  default ``Asia/Jakarta``), to the second, with the zone's abbreviation;
- ``badge``: a status as a coloured badge;
- ``tenant``: a tenant id as its name, linked to the tenant's page;
- ``health_sentence``: a provider configuration's health window as a sentence;
- ``duration``: seconds as ``3 h 05 min``, ``4 min 10 s``, ``12 s``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app, g, url_for
from markupsafe import Markup

DEFAULT_TIMEZONE = "Asia/Jakarta"

#: Digits after the decimal point of a currency's minor unit, where it is not 2. The hub keeps
#: rupiah as whole rupiah (a Rp 10,000 voucher costs 10200), so IDR has none.
EXPONENTS = {"IDR": 0, "JPY": 0, "KRW": 0, "VND": 0}

#: Badge colours (Bootstrap 4 contextual classes) by status; anything else is grey.
BADGES = {
    "succeeded": "success", "completed": "success", "delivered": "success", "active": "success",
    "success": "success", "closed": "success", "replayed": "success",
    "failed": "danger", "rejected": "danger", "disabled": "danger", "revoked": "danger", "open": "danger",
    "invalid": "danger", "dead": "danger",
    "review": "warning", "refunded": "warning", "half_open": "warning", "cancelled": "secondary",
    "pending": "info", "processing": "primary", "running": "primary", "queued": "info",
    "validating": "info", "submitted": "primary", "sent": "info", "valid": "info", "skipped": "secondary",
}


def money(amount: Any, currency: str | None = None) -> str:
    """``IDR 1,234,567``: integer minor units in whole units with thousands separators."""
    if amount is None or amount == "":
        return ""
    try:
        value = int(amount)
    except (TypeError, ValueError):
        return str(amount)
    code = (currency or "IDR").upper()
    exponent = EXPONENTS.get(code, 2)
    sign = "-" if value < 0 else ""
    whole, minor = divmod(abs(value), 10 ** exponent) if exponent else (abs(value), 0)
    text = f"{whole:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    return f"{code} {sign}{text}"


def admin_timezone(app: Flask | None = None) -> ZoneInfo:
    """The admin's timezone: ``ROP_ADMIN_TIMEZONE`` (app config or environment), default Asia/Jakarta."""
    import os

    app = app or current_app
    name = app.config.get("ROP_ADMIN_TIMEZONE") or os.environ.get("ROP_ADMIN_TIMEZONE") or DEFAULT_TIMEZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"ROP_ADMIN_TIMEZONE: unknown timezone {name!r} (an IANA name such as Asia/Jakarta)") from None


def when(value: Any) -> str:
    """A UTC datetime (naive ones are UTC, as the hub stores them) or ISO string in the admin's
    timezone: ``2026-12-06 23:05:09 WIB``; empty for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if not isinstance(value, dt.datetime):
        return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    local = value.astimezone(admin_timezone())
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def badge(status: Any) -> Markup:
    """A status as a coloured Bootstrap badge (``badge-success`` for succeeded…)."""
    if status is None or status == "":
        return Markup("")
    text = str(status)
    colour = BADGES.get(text, "secondary")
    return Markup('<span class="badge badge-{} status-{}">{}</span>').format(colour, text, text)


def tenant_names() -> dict[str, str]:
    """Every tenant's name by id, read once per request."""
    if "rop_admin_tenant_names" not in g:
        from hub.tenancy.service import list_tenants
        from hub.web import request_uow

        g.rop_admin_tenant_names = {t.id: t.name for t in list_tenants(request_uow())}
    return g.rop_admin_tenant_names


def tenant(tenant_id: str | None) -> Markup:
    """A tenant id as its name, linked to its page (the id in the link's title)."""
    if not tenant_id:
        return Markup("")
    name = tenant_names().get(tenant_id)
    href = url_for("admin_tenants.detail", tenant_id=tenant_id)
    return Markup('<a class="tenant-name" href="{}" title="{}">{}</a>').format(
        href, tenant_id, name if name is not None else tenant_id)


def health_sentence(health: dict[str, Any] | None) -> str:
    """A configuration's health window as a sentence."""
    if not health or not health.get("calls"):
        breaker = (health or {}).get("breaker", "closed")
        return "No calls recorded yet." + ("" if breaker == "closed" else f" Breaker {_BREAKER[breaker]}.")
    calls = health["calls"]
    rate = health.get("success_rate")
    parts = [f"{rate * 100:.0f} % of the last {calls} call{'s' if calls != 1 else ''} succeeded"
             if rate is not None else f"{calls} calls"]
    if health.get("latency_ms_p50") is not None:
        parts.append(f"typical latency {health['latency_ms_p50']:.0f} ms (p95 {health['latency_ms_p95']:.0f} ms)")
    return "; ".join(parts) + f". Breaker {_BREAKER.get(health.get('breaker', 'closed'), health.get('breaker'))}."


_BREAKER = {"closed": "closed (calls go through)", "open": "open: no new calls go to it",
            "half_open": "half-open: one probe call is let through"}


def sparkline(values: list[float] | None, width: int = 100, height: int = 18) -> Markup:
    """A small inline SVG polyline of ``values`` (oldest first); empty for fewer than 2."""
    values = [float(v) for v in (values or []) if v is not None]
    if len(values) < 2:
        return Markup("")
    peak = max(values) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 1 - v / peak * (height - 2):.1f}" for i, v in enumerate(values))
    return Markup('<svg class="sparkline" width="{w}" height="{h}" role="img" aria-label="latency of the last '
                  '{n} calls"><polyline points="{p}"></polyline></svg>').format(
        w=width, h=height, n=len(values), p=points)


def rule_value(value: Any, kind: str | None, currency: str = "IDR") -> str:
    """A price rule's value: ``markup_percent`` is in basis points (``2.50 %``), the other
    kinds are amounts (``IDR 1,500``)."""
    if value is None or value == "":
        return ""
    if kind == "markup_percent":
        return f"{int(value) / 100:.2f} %"
    return money(value, currency)


def duration(seconds: float | None) -> str:
    """``3 h 05 min``, ``4 min 10 s``, ``12 s``; empty for None."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def register(app: Flask) -> None:
    """Install the filters on the app's Jinja environment (every admin template uses them)."""
    admin_timezone(app)  # a misspelt ROP_ADMIN_TIMEZONE fails at start, not on a page
    app.jinja_env.filters.update(money=money, when=when, badge=badge, tenant=tenant,
                                 health_sentence=health_sentence, sparkline=sparkline,
                                 duration=duration, rule_value=rule_value)


__all__ = ["badge", "duration", "health_sentence", "money", "register", "rule_value", "sparkline", "tenant",
           "when"]
