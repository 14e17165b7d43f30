"""The Digital Transaction Service: purchases and bill payments through providers (docs/transactions.md)."""
from __future__ import annotations

#: How often the scheduler runs the sweep: due status checks, re-drives, deadlines (seconds).
SWEEP_EVERY = 5.0


def init_app(app, api) -> None:
    from hub.scheduler import PeriodicJob, register_periodic
    from hub.transactions import handlers, messages  # noqa: F401  (registers the message types)
    from hub.transactions.api import bp

    handlers.register(app)
    register_periodic(app, PeriodicJob("transactions.sweep", func="hub.transactions.sweep.sweep_job",
                                       every=SWEEP_EVERY, queue="default", timeout=300))
    api.register_blueprint(bp)
