"""The Digital Product Service: catalog, provider offers, availability, tenant pricing and
catalog sync (docs/products.md).

What other services call: :mod:`hub.products.client`.
"""
from __future__ import annotations

#: How often the scheduler syncs every provider's catalog (seconds). Digiflazz allows its
#: full price list at most every 5 minutes.
SYNC_EVERY = 900.0


def init_app(app, api) -> None:
    from hub.bus import register_command_handler
    from hub.products import handlers, messages
    from hub.products.api import bp
    from hub.products.demo import seed_catalog
    from hub.scheduler import PeriodicJob, register_periodic
    from hub.tenancy.demo import register_demo_step

    register_periodic(app, PeriodicJob("products.sync_catalogs", func="hub.products.jobs.sync_catalogs_job",
                                       every=SYNC_EVERY, queue="default", timeout=1800))
    register_command_handler(app, messages.SyncCatalog, handlers.sync_catalog, own_uow=True)
    register_demo_step("products", seed_catalog)
    api.register_blueprint(bp)
