"""``rop demo``'s catalog: a sandbox provider configuration, its catalog synced, and a
platform price list of cost + 2 % (when there is no platform rule yet)."""
from __future__ import annotations

from typing import Any

from hub.context import CallContext
from hub.db import unit_of_work

DEMO_MARKUP_BP = 200


def seed_catalog(app, uow, tenant, out: dict[str, str]) -> None:
    """Runs inside the demo's unit of work: the configuration and the price rule are added
    there; the sync needs its own units of work, so it runs once the demo has committed."""
    from hub.products import rules
    from hub.products.sync import sync_config
    from hub.providers import client as providers
    from hub.providers import service as provider_service

    ctx = CallContext.system(actor="cli:demo")
    config = next((c for c in providers.list_configs(uow)
                   if c["provider_code"] == "sandbox" and c["tenant_id"] is None), None)
    if config is None:  # the hub generates its callback secret: no constant anyone could sign with
        config_id = provider_service.add_config(uow, "sandbox", "Sandbox").id
    else:
        config_id = config["config_id"]
        provider_service.ensure_callback_secret(uow, config_id)  # one made before secrets were generated
    if not rules.list_rules(ctx, uow, tenant_id=None):
        rules.set_rule(ctx, uow, tenant_id=None, target="all", kind="markup_percent", value=DEMO_MARKUP_BP)
    out["catalog"] = f"sandbox configuration {config_id}: sync pending"
    db = app.extensions["rop"].db

    def sync() -> None:
        report: dict[str, Any] = sync_config(ctx, lambda: unit_of_work(db), config_id)
        if report["status"] == "succeeded":
            out["catalog"] = (f"{report['items']} sandbox products (configuration {config_id}); "
                              "rop catalog list --tenant demo")
        else:
            out["catalog"] = f"sandbox catalog sync failed: {report['error']}"

    uow.after_commit(sync)
