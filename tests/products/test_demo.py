"""``rop demo`` seeds a catalog: the sandbox's products at the platform price of cost + 2 %."""
from __future__ import annotations

from hub.db import unit_of_work
from hub.products import client
from hub.providers import service as provider_service
from hub.tenancy.demo import seed_demo
from tests.products.conftest import sale_ctx


def test_demo_seeds_a_priced_catalog_once(app):
    out = seed_demo(app)
    assert out["catalog"].endswith("rop catalog list --tenant demo") and "sandbox products" in out["catalog"]
    assert "secret" not in out["catalog"].lower()
    again = seed_demo(app)
    assert again["catalog"] == out["catalog"]
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        assert [c.provider_code for c in provider_service.list_configs(uow)] == ["sandbox"]
        tenant_id = out["tenant"].rsplit("id ", 1)[1].rstrip(")")
        tel10 = client.get_for_sale(sale_ctx(tenant_id), uow, "TEL10")
    assert tel10["active"] and tel10["price"] == 10_350 + 207  # cost + 2 %
