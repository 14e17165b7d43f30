"""The Digital Wallet Service: wallets, a double-entry ledger with holds (docs/wallets.md)."""
from __future__ import annotations

#: How often the scheduler voids expired holds (seconds).
EXPIRE_EVERY = 60.0
#: How often the scheduler verifies the ledger (seconds): daily.
VERIFY_EVERY = 86400.0
#: What ``rop demo`` tops the demo tenant's main wallet up with, once (minor units of IDR).
DEMO_BALANCE = 10_000_000
#: The top-up's idempotency reference: a second ``rop demo`` replays it, adding nothing.
DEMO_TOPUP_REF = "demo-opening-balance"


def seed_demo_wallet(app, uow, tenant, out: dict[str, str]) -> None:
    """``rop demo``'s step: the demo tenant's main wallet gets :data:`DEMO_BALANCE`, once, as
    an audited platform top-up with a reason (replayed, not repeated, on later runs)."""
    from hub.context import CallContext
    from hub.wallets import accounts

    ctx = CallContext.system(actor="cli:demo", tenant_id=tenant.id)
    result = accounts.topup(ctx, uow, None, DEMO_BALANCE, DEMO_TOPUP_REF,
                            reason="rop demo: the demo tenant's opening balance (play money)")
    wallet = accounts.get_wallet(ctx, uow, result["wallet_id"])
    note = "topped up once by rop demo" if not result["replayed"] else "its opening top-up was made earlier"
    out["wallet"] = (f"{wallet.id}: {wallet.available} {wallet.currency} available "
                     f"({note}: {DEMO_BALANCE} {wallet.currency})")


def init_app(app, api) -> None:
    from hub.scheduler import PeriodicJob, register_periodic
    from hub.tenancy.demo import register_demo_step
    from hub.wallets import messages  # noqa: F401  (registers the event types)
    from hub.wallets.api import bp

    register_periodic(app, PeriodicJob("wallets.expire_holds", func="hub.wallets.jobs.expire_holds_job",
                                       every=EXPIRE_EVERY, queue="default", timeout=300))
    register_periodic(app, PeriodicJob("wallets.verify", func="hub.wallets.jobs.verify_job",
                                       every=VERIFY_EVERY, queue="default", timeout=1800))
    register_demo_step("wallets", seed_demo_wallet)
    api.register_blueprint(bp)
