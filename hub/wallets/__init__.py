"""The Digital Wallet Service: wallets, a double-entry ledger with holds (docs/wallets.md)."""
from __future__ import annotations

#: How often the scheduler voids expired holds (seconds).
EXPIRE_EVERY = 60.0
#: How often the scheduler verifies the ledger (seconds): daily.
VERIFY_EVERY = 86400.0


def init_app(app, api) -> None:
    from hub.scheduler import PeriodicJob, register_periodic
    from hub.wallets import messages  # noqa: F401  (registers the event types)
    from hub.wallets.api import bp

    register_periodic(app, PeriodicJob("wallets.expire_holds", func="hub.wallets.jobs.expire_holds_job",
                                       every=EXPIRE_EVERY, queue="default", timeout=300))
    register_periodic(app, PeriodicJob("wallets.verify", func="hub.wallets.jobs.verify_job",
                                       every=VERIFY_EVERY, queue="default", timeout=1800))
    api.register_blueprint(bp)
