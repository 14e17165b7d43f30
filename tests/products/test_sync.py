"""Catalog sync from the sandbox and from the Digiflazz protocol's simulator: upserts,
changed prices, vanished products, history, events, and all-or-nothing failures."""
from __future__ import annotations

import pytest
from rop_digiflazz.simulator import DigiflazzSimulator
from sqlalchemy import func, select

from hub import hookimpl
from hub.bus.models import OutboxMessage
from hub.db import unit_of_work
from hub.errors import Conflict
from hub.products.models import CatalogSync, Offer, Product, ProductChange
from hub.products.sync import sync_config
from hub.products.testing import seed_sandbox_catalog
from tests.products.conftest import add_config


def snapshot(app) -> dict:
    """Everything a sync may change: products, offers, history, events."""
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        s = uow.session
        return {
            "products": sorted((p.code, p.status, p.name) for p in s.scalars(select(Product))),
            "offers": sorted((o.provider_sku, o.cost, o.status, o.product_id) for o in s.scalars(select(Offer))),
            "history": s.scalar(select(func.count()).select_from(ProductChange)),
            "events": sorted(s.scalars(select(OutboxMessage.type).where(OutboxMessage.type.like("product.%")))),
        }


def events(app, since: int = 0) -> list[tuple[str, str]]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = uow.session.scalars(select(OutboxMessage).where(OutboxMessage.type.like("product.%"))
                                   .order_by(OutboxMessage.created_at, OutboxMessage.id))
        return [(r.type, r.envelope["payload"]["code"]) for r in rows][since:]


def history(app, code: str) -> list[tuple[str, str | None, str | None]]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        product_id = uow.session.scalar(select(Product.id).where(Product.code == code))
        return [(c.field, c.old_value, c.new_value) for c in uow.session.scalars(
            select(ProductChange).where(ProductChange.product_id == product_id).order_by(ProductChange.seq))]


@pytest.fixture
def digiflazz(app):
    with DigiflazzSimulator(username="hubuser", api_key="k1") as sim:
        config_id = add_config(app, "digiflazz", "Digiflazz", settings={"base_url": sim.url, "testing": True},
                               credentials={"username": "hubuser", "api_key": "k1", "webhook_secret": "wh"})
        yield sim, config_id


def sync(app, units, system, config_id, **kwargs):
    with app.app_context():
        return sync_config(system, units, config_id, **kwargs)


def test_sandbox_sync_creates_products_and_a_second_sync_changes_nothing(app, units, system):
    codes = seed_sandbox_catalog(app)
    first = snapshot(app)
    assert len(first["products"]) == len(codes) == first["events"].count("product.created")
    assert all(status == "active" for _code, status, _name in first["products"])
    with unit_of_work(app.extensions["rop"].db) as uow:
        [run] = uow.session.scalars(select(CatalogSync)).all()
        assert (run.status, run.items, run.created, run.changed, run.vanished) == (
            "succeeded", len(codes), len(codes), 0, 0)
        config_id = run.config_id
    report = sync(app, units, system, config_id)
    assert (report["status"], report["created"], report["changed"], report["vanished"]) == ("succeeded", 0, 0, 0)
    assert snapshot(app) == first  # no history, no events for an unchanged catalog
    assert history(app, "TEL10") == [("created", None, "TEL10"), ("offer_added", None, "sandbox:TEL10")]


def test_two_configurations_selling_one_sku_make_one_product_with_two_offers(app, units, system):
    seed_sandbox_catalog(app)
    second = add_config(app, name="Sandbox B")
    report = sync(app, units, system, second)
    assert (report["created"], report["changed"]) == (0, report["items"])
    with unit_of_work(app.extensions["rop"].db) as uow:
        tel10 = uow.session.scalar(select(Product).where(Product.code == "TEL10"))
        assert len(uow.session.scalars(select(Offer).where(Offer.product_id == tel10.id)).all()) == 2


def test_digiflazz_price_change_vanish_and_return(app, units, system, digiflazz):
    sim, config_id = digiflazz
    first = sync(app, units, system, config_id)
    assert (first["status"], first["items"], first["created"]) == ("succeeded", 4, 4)
    with unit_of_work(app.extensions["rop"].db) as uow:
        products = {p.code: (p.category_code, p.brand_code, p.type, p.status, p.nominal)
                    for p in uow.session.scalars(select(Product))}
    assert {code: p[:4] for code, p in products.items()} == {
        "XLD10": ("pulsa", "xl", "prepaid", "active"),
        "TSEL25": ("pulsa", "telkomsel", "prepaid", "active"),
        "PLN20": ("pln", "pln", "prepaid", "unavailable"),  # the seller's status is off
        "PLN": ("bill", "pln-pascabayar", "postpaid", "active"),
    }
    assert products["XLD10"][4] == 10_000
    seen = len(events(app))

    # The provider raises one price and drops a product.
    sim.prepaid_list[0]["price"] = "10400"
    sim.prepaid_list = [row for row in sim.prepaid_list if row["buyer_sku_code"] != "tsel25"]
    second = sync(app, units, system, config_id)
    assert (second["status"], second["created"], second["changed"], second["vanished"]) == ("succeeded", 0, 1, 1)
    assert sorted(events(app, seen)) == [("product.changed", "XLD10"), ("product.vanished", "TSEL25")]
    assert history(app, "XLD10")[-1] == ("cost", "10200", "10400")
    assert history(app, "TSEL25")[-2:] == [("offer_status", "active", "vanished"), ("status", "active", "unavailable")]
    with unit_of_work(app.extensions["rop"].db) as uow:
        tsel = uow.session.scalar(select(Product).where(Product.code == "TSEL25"))
        assert tsel.status == "unavailable"  # kept, never deleted
        assert uow.session.scalar(select(Offer.status).where(Offer.product_id == tsel.id)) == "vanished"

    # It comes back.
    sim.prepaid_list.append({"product_name": "Telkomsel 25.000", "category": "Pulsa", "brand": "TELKOMSEL",
                             "price": 25_100, "buyer_sku_code": "tsel25", "buyer_product_status": True,
                             "seller_product_status": True})
    third = sync(app, units, system, config_id)
    assert (third["changed"], third["vanished"]) == (1, 0)
    assert history(app, "TSEL25")[-3:] == [("cost", "25150", "25100"), ("offer_status", "vanished", "active"),
                                           ("status", "unavailable", "active")]


def test_a_sync_failing_half_way_changes_nothing(app, units, system, digiflazz):
    sim, config_id = digiflazz
    assert sync(app, units, system, config_id)["status"] == "succeeded"
    before = snapshot(app)
    # Prices change and a product goes — and the list ends with an item that makes no product code:
    # the first items are applied in the transaction before the bad one stops the sync.
    sim.prepaid_list[0]["price"] = "11000"
    sim.prepaid_list = [row for row in sim.prepaid_list if row["buyer_sku_code"] != "tsel25"]
    sim.prepaid_list.append({"product_name": "Broken", "category": "Pulsa", "brand": "X", "price": 1,
                             "buyer_sku_code": "+++", "buyer_product_status": True, "seller_product_status": True})
    report = sync(app, units, system, config_id)
    assert report["status"] == "failed" and "'+++'" in report["error"] and "product code" in report["error"]
    assert snapshot(app) == before
    with unit_of_work(app.extensions["rop"].db) as uow:
        runs = [r.status for r in uow.session.scalars(select(CatalogSync).order_by(CatalogSync.started_at))]
    assert runs == ["succeeded", "failed"]


def test_a_provider_error_on_one_price_list_changes_nothing(app, units, system, digiflazz):
    sim, config_id = digiflazz
    assert sync(app, units, system, config_id)["status"] == "succeeded"
    before = snapshot(app)
    sim.prepaid_list[0]["price"] = "11000"
    # The prepaid list answers; the postpaid one is refused (rate limited).
    sim.pasca_list = {"rc": "83", "message": "Limit request"}
    report = sync(app, units, system, config_id)
    assert report["status"] == "failed" and "CatalogUnavailable" in report["error"]
    assert snapshot(app) == before  # neither the new price nor a vanished postpaid product
    sim.pasca_list = []
    sim.fail_next = [500]  # an HTTP error on the first list
    report = sync(app, units, system, config_id)
    assert report["status"] == "failed" and "CatalogUnavailable" in report["error"]
    assert snapshot(app) == before


def test_an_empty_catalog_is_refused_unless_allowed(app, units, system, digiflazz):
    sim, config_id = digiflazz
    assert sync(app, units, system, config_id)["status"] == "succeeded"
    before = snapshot(app)
    sim.prepaid_list, sim.pasca_list = [], []
    refused = sync(app, units, system, config_id)
    assert refused["status"] == "failed" and "empty catalog" in refused["error"]
    assert snapshot(app) == before
    accepted = sync(app, units, system, config_id, allow_empty=True)
    assert (accepted["status"], accepted["vanished"]) == ("succeeded", 3)  # PLN20 was unavailable already
    assert {status for _c, status, _n in snapshot(app)["products"]} == {"unavailable"}


def test_a_switched_off_configuration_is_not_synced_to_empty(app, units, system):
    from hub.providers import service as provider_service

    seed_sandbox_catalog(app)
    before = snapshot(app)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        [row] = provider_service.list_configs(uow)
        provider_service.set_enabled(uow, row.id, False)
        uow.commit()
    report = sync(app, units, system, row.id)
    assert report["status"] == "failed" and "switched off" in report["error"]
    assert snapshot(app) == before


class LoadedRecorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def catalog_loaded(self, provider_code, config_id, products):
        self.calls.append((provider_code, config_id, len(products)))


def test_catalog_loaded_runs_after_a_committed_sync_only_and_events_carry_no_cost(app, units, system, digiflazz):
    sim, config_id = digiflazz
    recorder = LoadedRecorder()
    host = app.extensions["rop"].extras["plugins"]
    host.pm.register(recorder)
    try:
        assert sync(app, units, system, config_id)["status"] == "succeeded"
        sim.fail_next = [500]
        assert sync(app, units, system, config_id)["status"] == "failed"
    finally:
        host.pm.unregister(recorder)
    assert recorder.calls == [("digiflazz", config_id, 4)]
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        payloads = [m.envelope["payload"] for m in uow.session.scalars(
            select(OutboxMessage).where(OutboxMessage.type.like("product.%")))]
    assert payloads and all(set(p) == {"code", "name", "category", "brand", "type", "status", "changes", "sync_id"}
                            for p in payloads)


def test_a_second_sync_waits_for_the_first_and_gives_up_with_a_conflict(app, units, system, monkeypatch):
    from hub.products import sync as sync_module

    config_id = add_config(app)
    monkeypatch.setattr(sync_module, "LOCK_WAIT", 0.3)
    held = app.extensions["rop"].redis.lock(sync_module.LOCK_KEY, timeout=30)
    assert held.acquire()
    try:
        with pytest.raises(Conflict):
            sync(app, units, system, config_id)
        with app.app_context():  # the scheduled job goes on with the next configuration
            [report] = sync_module.sync_all(system, units)
        assert (report["config_id"], report["status"]) == (config_id, "skipped")
    finally:
        held.release()
    assert sync(app, units, system, config_id)["status"] == "succeeded"


def test_a_cost_beyond_what_the_hub_sells_at_fails_the_sync_naming_it(app, units, system, digiflazz):
    """A provider's price past MAX_COST (here past BIGINT too) is a malformed item: the sync
    fails naming it, instead of a database error storing it (or a price that overflows)."""
    sim, config_id = digiflazz
    assert sync(app, units, system, config_id)["status"] == "succeeded"
    before = snapshot(app)
    sim.prepaid_list[0]["price"] = str(10**19)
    report = sync(app, units, system, config_id)
    assert report["status"] == "failed" and "10,000,000,000,000,000,000 is above" in report["error"]
    assert snapshot(app) == before
