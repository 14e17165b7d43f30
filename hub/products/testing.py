"""Helpers for tests (of this service and of the services that sell its products)."""
from __future__ import annotations

from typing import Any

from hub.context import CallContext
from hub.db import unit_of_work


def seed_sandbox_catalog(app, *, settings: dict[str, Any] | None = None) -> list[str]:
    """Make sure a platform-wide sandbox provider configuration exists (one is added when
    there is none), sync its catalog, and return the product codes it sells (sorted).

    Codes are the sandbox SKUs: ``TEL10`` (Pulsa Telkomsel 10,000, prepaid), ``PLN20``,
    ``GOPAY25``, ``ML86``, ``PLNPOST`` and ``BPJS`` (postpaid)…

    :raise AssertionError: when the sync fails (a test cannot go on without a catalog).
    """
    from sqlalchemy import select

    from hub.products.models import Offer, Product
    from hub.products.sync import sync_config
    from hub.providers import client as providers
    from hub.providers import service as provider_service

    db = app.extensions["rop"].db
    with app.app_context():
        with unit_of_work(db) as uow:
            config = next((c for c in providers.list_configs(uow)
                           if c["provider_code"] == "sandbox" and c["tenant_id"] is None), None)
            if config is None:
                row = provider_service.add_config(uow, "sandbox", "Sandbox", settings=settings or {})
                uow.commit()
                config_id = row.id
            else:
                config_id = config["config_id"]
        report = sync_config(CallContext.system(actor="tests:seed"), lambda: unit_of_work(db), config_id)
        assert report["status"] == "succeeded", f"sandbox catalog sync failed: {report['error']}"
        with unit_of_work(db, readonly=True) as uow:
            return sorted(uow.session.scalars(select(Product.code).join(Offer, Offer.product_id == Product.id)
                                              .where(Offer.config_id == config_id).distinct()))
