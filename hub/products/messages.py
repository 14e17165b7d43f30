"""Events and commands of the products service (published through the bus outbox).

Product events are platform-wide (no tenant): they say what changed in the catalog, never
a cost or a tenant's price.
"""
from __future__ import annotations

from marshmallow import Schema, fields

from hub.bus import Command, Event


class ProductEventSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    category = fields.String(required=True)
    brand = fields.String(required=True)
    type = fields.String(required=True)
    status = fields.String(required=True)
    #: what changed: ``cost``, ``offer_added``, ``offer_status``, ``status``, ``priority``…
    changes = fields.List(fields.String(), load_default=list)
    sync_id = fields.String(allow_none=True, load_default=None)


class ProductCreated(Event):
    """A product appeared in the catalog (first seen in a provider's catalog)."""

    type = "product.created"
    schema = ProductEventSchema
    public = False  # platform-wide catalog events, not a tenant's


class ProductChanged(Event):
    """A product's offers changed (cost, status, a new or vanished offer) or its status
    changed other than becoming unavailable."""

    type = "product.changed"
    schema = ProductEventSchema
    public = False


class ProductVanished(Event):
    """A product lost its last active offer and became unavailable (it is not deleted)."""

    type = "product.vanished"
    schema = ProductEventSchema
    public = False


class SyncCatalogSchema(Schema):
    config_id = fields.String(required=True)
    allow_empty = fields.Boolean(load_default=False)


class SyncCatalog(Command):
    """Pull one provider configuration's catalog and upsert its offers."""

    type = "products.sync_catalog"
    schema = SyncCatalogSchema
    max_retries = 2
    retry_base = 30.0
