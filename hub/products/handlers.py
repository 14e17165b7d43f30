"""Message handlers of the products service."""
from __future__ import annotations

from flask import current_app

from hub.context import CallContext
from hub.db import unit_of_work
from hub.products.messages import SyncCatalog
from hub.products.sync import sync_config


def sync_catalog(ctx: CallContext, message: SyncCatalog) -> None:
    """Run a requested catalog sync (``own_uow``: the sync opens its own units of work and
    never holds one across the provider call). Safe to run twice: a second run of the
    same catalog changes nothing. A failed sync is recorded, not retried: the next
    scheduled one tries again."""
    db = current_app.extensions["rop"].db
    data = message.data
    sync_config(ctx, lambda: unit_of_work(db), data["config_id"], allow_empty=data["allow_empty"])
