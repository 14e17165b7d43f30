"""Running the sync: the CLI, the scheduled job, the SyncCatalog command on a real worker;
operator use-cases (history, switching products and offers off)."""
from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import select

from hub.context import CallContext
from hub.db import unit_of_work
from hub.errors import Forbidden, NotFound, ValidationFailed
from hub.products import client, operators
from hub.products.models import CatalogSync, Product
from hub.products.testing import seed_sandbox_catalog
from hub.worker import make_worker
from tests.products.conftest import add_config, sale_ctx

OPERATOR = CallContext.system(actor="tests:operator")


@pytest.fixture
def rop(cli):
    """``rop(*args)``: the CLI run in this process (``hub.cli.main``) on the suite's database
    and Redis, answered as a finished process would be (returncode, stdout, stderr)."""

    def run(*args):
        code, out, err = cli(*args)
        return subprocess.CompletedProcess(["rop", *args], code, out, err)

    return run


def product_codes(app) -> list[str]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return sorted(uow.session.scalars(select(Product.code)))


def test_rop_catalog_sync_and_pricing_from_the_cli(app, rop):
    nothing = rop("catalog", "sync")
    assert nothing.returncode == 1 and "no enabled provider configuration" in nothing.stderr
    config_id = add_config(app)
    synced = rop("catalog", "sync", "--provider", "sandbox", "--json")
    assert synced.returncode == 0, synced.stderr
    [report] = json.loads(synced.stdout)
    assert (report["config_id"], report["status"]) == (config_id, "succeeded")
    assert "TEL10" in product_codes(app)
    again = rop("catalog", "sync")
    assert again.returncode == 0 and f"{config_id} sandbox: succeeded" in again.stdout and "0 created" in again.stdout
    unknown = rop("catalog", "sync", "--config", "pcf_nope")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert rop("pricing", "set", "--category", "pulsa", "markup_fixed", "500").returncode == 0
    bad = rop("pricing", "set", "--product", "NOPE", "fixed_price", "1000")
    assert bad.returncode == 1 and "no product 'NOPE'" in bad.stderr
    listed = json.loads(rop("pricing", "list", "--json").stdout)
    assert [(r["target"], r["kind"], r["value"]) for r in listed] == [("category:pulsa", "markup_fixed", 500)]
    history = rop("catalog", "history", "TEL10")
    assert history.returncode == 0 and "offer_added" in history.stdout
    assert rop("tenants", "create", "Cli Shop").returncode == 0
    listed = {p["code"]: p for p in json.loads(rop("catalog", "list", "--tenant", "cli-shop", "--json").stdout)}
    assert listed["TEL10"]["price"] == 10_350 + 500 and "cost" not in listed["TEL10"]
    explained = json.loads(rop("pricing", "explain", "--tenant", "cli-shop", "TEL10").stdout)
    assert (explained["cost"], explained["price"]) == (10_350, 10_850)


def test_the_scheduled_job_syncs_every_catalog_and_records_failures(app):
    from hub.products.jobs import sync_catalogs_job
    from hub.scheduler import periodic_jobs

    assert "products.sync_catalogs" in {job.name for job in periodic_jobs(app)}
    good = add_config(app, name="Sandbox")
    broken = add_config(app, "digiflazz", "Digiflazz (nothing listens)",
                        settings={"base_url": "http://127.0.0.1:9", "testing": True},
                        credentials={"username": "u", "api_key": "k", "webhook_secret": "s"})
    with app.app_context():
        reports = {r["config_id"]: r for r in sync_catalogs_job()}
    assert reports[good]["status"] == "succeeded" and reports[broken]["status"] == "failed"
    assert "TEL10" in product_codes(app)


def test_sync_catalog_command_runs_on_a_worker(app):
    config_id = add_config(app)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        operators.request_sync(OPERATOR, uow, config_id)
        uow.commit()
    assert product_codes(app) == []  # nothing until a worker runs it
    make_worker(app).work(burst=True)
    assert "TEL10" in product_codes(app)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        assert [r["status"] for r in operators.list_syncs(OPERATOR, uow)] == ["succeeded"]
        assert uow.session.scalar(select(CatalogSync.actor)) == "tests:operator"


def test_an_operator_takes_a_product_and_an_offer_off_sale(app, run, client, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    second = add_config(app, name="Sandbox B")
    from hub.products.sync import sync_config

    with app.app_context():
        sync_config(OPERATOR, lambda: unit_of_work(app.extensions["rop"].db), second)
    detail = run(operators.product_detail, OPERATOR, "TEL10")
    assert len(detail["offers"]) == 2 and all("cost" in o for o in detail["offers"])
    first_offer, second_offer = (o["id"] for o in detail["offers"])
    run(operators.set_offer_enabled, OPERATOR, first_offer, False)
    assert run(client_view, tenant.id, "TEL10")["active"] is True  # one offer left
    run(operators.set_offer_enabled, OPERATOR, second_offer, False)
    assert run(client_view, tenant.id, "TEL10")["active"] is False
    assert run(operators.product_detail, OPERATOR, "TEL10")["status"] == "unavailable"
    # A sync keeps an operator's switch.
    with app.app_context():
        sync_config(OPERATOR, lambda: unit_of_work(app.extensions["rop"].db), second)
    assert run(operators.product_detail, OPERATOR, "TEL10")["status"] == "unavailable"
    run(operators.set_offer_enabled, OPERATOR, second_offer, True)
    assert run(client_view, tenant.id, "TEL10")["active"] is True
    run(operators.set_product_enabled, OPERATOR, "TEL10", False)
    assert client.get("/v1/products/TEL10", headers=tenant.headers).status_code == 404
    assert run(client_view, tenant.id, "TEL10")["active"] is False
    run(operators.set_product_enabled, OPERATOR, "TEL10", True)
    assert client.get("/v1/products/TEL10", headers=tenant.headers).get_json()["active"] is True
    fields = [h["field"] for h in run(operators.product_history, OPERATOR, "TEL10")]
    assert fields.count("offer_status") >= 3 and fields.count("status") >= 3


def client_view(tenant_id, uow, code):
    return client.get_for_sale(sale_ctx(tenant_id), uow, code)


def test_operator_calls_need_the_platform_scope_and_valid_input(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    with pytest.raises(Forbidden):
        run(operators.product_detail, tenant.ctx, "TEL10")
    with pytest.raises(NotFound):
        run(operators.product_history, OPERATOR, "NOPE")
    offer_id = run(operators.product_detail, OPERATOR, "TEL10")["offers"][0]["id"]
    with pytest.raises(ValidationFailed):
        run(operators.set_offer_priority, OPERATOR, offer_id, -1)
    assert run(operators.set_offer_priority, OPERATOR, offer_id, 5)["priority"] == 5


def test_rop_catalog_sync_and_list_flag_products_that_no_price_rule_prices(app, rop):
    add_config(app)
    synced = rop("catalog", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "no platform price rule and sell at cost: BPJS, " in synced.stderr  # the first codes, then a count
    assert rop("tenants", "create", "At Cost").returncode == 0
    listed = rop("catalog", "list", "--tenant", "at-cost", "--json")
    assert "sell at cost" in listed.stderr
    assert {p["code"]: p["at_cost"] for p in json.loads(listed.stdout)}["TEL10"] is True
    assert rop("pricing", "set", "--tenant", "at-cost", "markup_percent", "200").returncode == 0
    priced = rop("catalog", "list", "--tenant", "at-cost")
    assert priced.returncode == 0 and "at cost" not in priced.stdout + priced.stderr
    assert "TEL10" in priced.stdout
