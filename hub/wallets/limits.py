"""How much one money operation may move, and when an operator's needs a second operator.

Every top-up, adjustment and transfer is at most a **limit** per operation (amounts are
whole minor units: rupiah for IDR). A deployment sets its limits in the environment, a
tenant may have its own (``rop wallets set-limit``, the tenant's admin page):

=============================  ==========================================================
``ROP_AMOUNT_LIMIT``           every kind's limit (default 1,000,000,000)
``ROP_AMOUNT_LIMIT_TOPUP``     a top-up's (default: ``ROP_AMOUNT_LIMIT``)
``ROP_AMOUNT_LIMIT_ADJUSTMENT`` an adjustment's, either sign (default: ``ROP_AMOUNT_LIMIT``)
``ROP_AMOUNT_LIMIT_TRANSFER``  a transfer's (default: ``ROP_AMOUNT_LIMIT``)
``ROP_FOUR_EYES_AMOUNT``       an operator's top-up or adjustment above this needs a second
                               operator's approval (default 100,000,000)
``ROP_FOUR_EYES_DAILY``        ... and so does one that takes the operator's total of the
                               UTC day above this (default 200,000,000)
=============================  ==========================================================

A tenant's own limit for a kind wins over the deployment's (its ``default`` covers the kinds
it does not name). No limit may exceed :data:`MAX_LIMIT`, and no balance may exceed
:data:`MAX_BALANCE` (the largest the ledger's BIGINT columns store): an operation that would
is refused with 422 like one above its limit, never a database error.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.errors import ValidationFailed

#: the kinds of operation that have a limit
KINDS = ("topup", "adjustment", "transfer")
LABELS = {"topup": "top-up", "adjustment": "adjustment", "transfer": "transfer"}
DEFAULT_LIMIT = 1_000_000_000
DEFAULT_FOUR_EYES_AMOUNT = 100_000_000
DEFAULT_FOUR_EYES_DAILY = 200_000_000
#: the largest limit a deployment or a tenant may set
MAX_LIMIT = 10**15
#: the largest balance the ledger stores (BIGINT)
MAX_BALANCE = 2**63 - 1
ENV_LIMIT = "ROP_AMOUNT_LIMIT"
ENV_FOUR_EYES_AMOUNT = "ROP_FOUR_EYES_AMOUNT"
ENV_FOUR_EYES_DAILY = "ROP_FOUR_EYES_DAILY"


def env_name(kind: str | None) -> str:
    return ENV_LIMIT if kind in (None, "default") else f"{ENV_LIMIT}_{kind.upper()}"


def money(amount: int, currency: str = "IDR") -> str:
    """``1,000,000,000 IDR``: an amount with thousands separators and its currency."""
    return f"{amount:,} {currency}"


def _env_amount(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = (env.get(name) or "").strip().replace("_", "")
    if not raw:
        return default
    if not re.fullmatch(r"\d+", raw) or not 0 < int(raw) <= MAX_LIMIT:
        raise ValueError(f"{name} must be a whole number of minor units from 1 to {MAX_LIMIT:,}, got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class MoneySettings:
    """The deployment's limits (``Config.money``; tests may set
    ``app.extensions["rop"].extras["wallets.limits"]``)."""

    limit: int = DEFAULT_LIMIT
    #: per kind, overriding ``limit``
    kind_limits: tuple[tuple[str, int], ...] = ()
    four_eyes_amount: int = DEFAULT_FOUR_EYES_AMOUNT
    four_eyes_daily: int = DEFAULT_FOUR_EYES_DAILY

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MoneySettings:
        """:raise ValueError: one line naming a malformed variable."""
        kinds = tuple((kind, value) for kind in KINDS
                      if (value := _env_amount(env, env_name(kind), None)) is not None)
        return cls(limit=_env_amount(env, ENV_LIMIT, DEFAULT_LIMIT) or DEFAULT_LIMIT, kind_limits=kinds,
                   four_eyes_amount=_env_amount(env, ENV_FOUR_EYES_AMOUNT, DEFAULT_FOUR_EYES_AMOUNT)
                   or DEFAULT_FOUR_EYES_AMOUNT,
                   four_eyes_daily=_env_amount(env, ENV_FOUR_EYES_DAILY, DEFAULT_FOUR_EYES_DAILY)
                   or DEFAULT_FOUR_EYES_DAILY)

    def deployment_limit(self, kind: str) -> tuple[int, str]:
        """``(limit, where it is set)`` of ``kind`` for a tenant without its own."""
        for name, value in self.kind_limits:
            if name == kind:
                return value, env_name(kind)
        return self.limit, ENV_LIMIT


def settings() -> MoneySettings:
    """The running app's settings (the defaults outside an app)."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return MoneySettings()
    state = current_app.extensions["rop"]
    found = state.extras.get("wallets.limits") or getattr(state.config, "money", None)
    return found or MoneySettings()


def tenant_limits(uow, tenant_id: str | None) -> dict[str, int]:
    """The tenant's own limits (``{kind or "default": amount}``; empty: the deployment's)."""
    from hub.wallets.models import TenantLimits

    if tenant_id is None:
        return {}
    row = uow.session.get(TenantLimits, tenant_id)
    return dict(row.limits or {}) if row is not None else {}


def effective_limits(uow, tenant_id: str | None) -> dict[str, dict[str, Any]]:
    """Each kind's limit for ``tenant_id`` and where it is set: ``{kind: {"limit", "source"}}``."""
    own, deployment = tenant_limits(uow, tenant_id), settings()
    out = {}
    for kind in KINDS:
        if kind in own:
            out[kind] = {"limit": own[kind], "source": f"tenant ({kind})"}
        elif "default" in own:
            out[kind] = {"limit": own["default"], "source": "tenant (default)"}
        else:
            limit, source = deployment.deployment_limit(kind)
            out[kind] = {"limit": limit, "source": source}
    return out


def check_amount(uow, tenant_id: str | None, kind: str, amount: int, currency: str = "IDR") -> None:
    """Refuse (422) an operation of ``kind`` whose amount (either sign) is above its limit.

    The problem names the limit, where it is set and the figure.
    """
    found = effective_limits(uow, tenant_id)[kind]
    if abs(amount) > found["limit"]:
        label = LABELS[kind]
        raise ValidationFailed(
            f"a {label} of {money(abs(amount), currency)} is above the limit of {money(found['limit'], currency)} "
            f"per {label} (set by {found['source']})",
            errors={"amount": [f"at most {found['limit']} per {label}"]},
            limit=found["limit"], limit_source=found["source"], amount=abs(amount))


def check_balance(wallet_id: str, balance: int, amount: int, currency: str = "IDR") -> None:
    """Refuse (422) a credit that would take a balance above :data:`MAX_BALANCE`."""
    if balance + amount > MAX_BALANCE:
        raise ValidationFailed(
            f"crediting {money(amount, currency)} would take wallet {wallet_id} above the largest balance the "
            f"ledger stores ({money(MAX_BALANCE, currency)})",
            errors={"amount": ["the balance would exceed the largest the ledger stores"]},
            limit=MAX_BALANCE, amount=amount)


def parse_limit(value: Any, name: str = "limit") -> int | None:
    """A limit given by an operator: a whole number 1..MAX_LIMIT (``_`` and ``,`` separators
    allowed), or None for empty / ``none`` (the deployment's). :raise ValidationFailed:"""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValidationFailed(f"{name} must be a whole number", errors={name: ["invalid"]})
    if isinstance(value, int):
        text = str(value)
    else:
        text = str(value).strip().replace("_", "").replace(",", "")
        if text.lower() in ("", "none"):
            return None
    if not re.fullmatch(r"\d+", text) or not 0 < int(text) <= MAX_LIMIT:
        raise ValidationFailed(f"{name} must be a whole number from 1 to {MAX_LIMIT:,}, got {value!r}",
                               errors={name: [f"1 to {MAX_LIMIT}"]})
    return int(text)


def set_tenant_limits(ctx, uow, tenant_id: str, limits: Mapping[str, Any]) -> dict[str, int]:
    """Set (or with None, remove) the tenant's own limits: keys ``default`` and the
    :data:`KINDS`. Platform-level (scope ``*``); audited as ``wallet.limits_set``.

    :return: the tenant's own limits now.
    """
    from hub.tenancy.service import get_tenant, record_audit
    from hub.wallets.models import TenantLimits

    ctx.require_scope("*")
    tenant = get_tenant(uow, tenant_id)
    unknown = sorted(set(limits) - {"default", *KINDS})
    if unknown:
        raise ValidationFailed(f"unknown limit {unknown[0]!r}: one of default, {', '.join(KINDS)}",
                               errors={unknown[0]: ["unknown"]})
    parsed = {key: parse_limit(value, key) for key, value in limits.items()}
    row = uow.session.get(TenantLimits, tenant.id, with_for_update=True)
    before = dict(row.limits or {}) if row is not None else {}
    after = {k: v for k, v in {**before, **parsed}.items() if v is not None}
    if row is None:
        row = TenantLimits(tenant_id=tenant.id, limits=after, updated_by=ctx.actor)
        uow.session.add(row)
    else:
        row.limits, row.updated_by = after, ctx.actor
    if after != before:
        record_audit(ctx, uow, "wallet.limits_set", tenant_id=tenant.id, target_type="tenant", target_id=tenant.id,
                     before=before, after=after)
    uow.session.flush()
    return after
