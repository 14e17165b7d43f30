"""The wallets service's use-cases under their former single module's name (compatibility).

They live in :mod:`hub.wallets.ledger` (the one write primitive, :func:`~hub.wallets.ledger.post`),
:mod:`hub.wallets.accounts` (wallets, top-ups, adjustments, transfers, statements),
:mod:`hub.wallets.holds` (holds, captures, voids, reversals, their batches) and
:mod:`hub.wallets.checks` (``verify``, the dashboard's sums). :mod:`hub.wallets.client`
(what other services call) reaches them through here; new code imports those modules.
"""
from __future__ import annotations

from hub.wallets.accounts import (
    adjust,
    create_main_wallet,
    create_wallet,
    get_main_wallet,
    get_wallet,
    list_wallets,
    operator_wallets,
    set_overdraft_limit,
    statement,
    statement_page,
    topup,
    transfer,
)
from hub.wallets.checks import verify_ledger, wallet_totals
from hub.wallets.holds import (
    HoldPlan,
    capture_hold,
    capture_holds,
    get_hold,
    place_hold,
    place_holds,
    plan_hold,
    reverse_capture,
    void_hold,
)
from hub.wallets.jobs import void_expired_holds
from hub.wallets.ledger import ADJUSTMENTS, DEFAULT_CURRENCY, FUNDING, SETTLEMENT, fingerprint

__all__ = [
    "ADJUSTMENTS", "DEFAULT_CURRENCY", "FUNDING", "SETTLEMENT", "HoldPlan", "adjust", "capture_hold",
    "capture_holds", "create_main_wallet", "create_wallet", "fingerprint", "get_hold", "get_main_wallet",
    "get_wallet", "list_wallets", "operator_wallets", "place_hold", "place_holds", "plan_hold",
    "reverse_capture", "set_overdraft_limit", "statement", "statement_page", "topup", "transfer",
    "verify_ledger", "void_expired_holds", "void_hold", "wallet_totals",
]
