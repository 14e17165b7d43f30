"""The event backbone: commands and events through a transactional outbox and RQ.

The API other services use (docs/bus.md)::

    from hub.bus import Command, Event, publish, register_command_handler, subscribe
"""
from __future__ import annotations

from hub.bus.messages import Command, Event, Message
from hub.bus.outbox import publish
from hub.bus.registry import add_global_listener, register_command_handler, subscribe

__all__ = [
    "Command",
    "Event",
    "Message",
    "add_global_listener",
    "init_app",
    "publish",
    "register_command_handler",
    "subscribe",
]

#: How often ``rop scheduler`` runs the outbox sweep (seconds).
SWEEP_EVERY = 5.0


def init_app(app, api) -> None:
    from hub.scheduler import PeriodicJob, register_periodic

    register_periodic(app, PeriodicJob("bus.outbox_sweep", func="hub.bus.outbox.sweep_job",
                                       every=SWEEP_EVERY, queue="default", timeout=120))
    from hub.bus.api import bp

    register_periodic(app, PeriodicJob("bus.webhook_sweep", func="hub.bus.webhooks.sweep_deliveries_job",
                                       every=30, queue="default", timeout=120))
    api.register_blueprint(bp)
