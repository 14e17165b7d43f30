"""Provider configurations as purchases see them: the callback URL reaches the plugin, and
``rop providers remove`` retires a configuration with history (no new purchase goes to it;
status checks and callbacks of purchases already sent there go on) and deletes one without."""
from __future__ import annotations

import json

from rop_digiflazz.simulator import DigiflazzSimulator
from rop_sandbox.plugin import SIGNATURE_HEADER, sign
from sqlalchemy import select

from hub.context import CallContext
from hub.db import unit_of_work

from .conftest import buy, callback_secret, check_now, drain, in_flight, transaction


def _audit(app, action: str) -> list:
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(e.target_id, e.actor_type, e.after) for e in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action))]


def test_the_purchase_request_carries_the_configurations_callback_url(app, client, funded, sandbox, cli):
    """Digiflazz takes the callback URL per request (``cb_url``): the one ``rop providers show``
    prints for the configuration."""
    from hub.products.sync import sync_config

    app.extensions["rop"].extras["public_url"] = cli.public_url  # the workers below: as ROP_PUBLIC_URL says
    with DigiflazzSimulator(username="hubuser", api_key="k1") as sim:
        code, out, err = cli("providers", "add", "digiflazz", "--name", "Digiflazz",
                             "--settings", json.dumps({"base_url": sim.url}),
                             "--credentials", '{"username": "hubuser", "api_key": "k1"}')
        assert code == 0, err
        config_id = out.strip()
        assert cli("providers", "disable", sandbox)[0] == 0
        with app.app_context():
            report = sync_config(CallContext.system(actor="tests"), lambda: unit_of_work(app.extensions["rop"].db),
                                 config_id)
        assert report["status"] == "succeeded"
        created = buy(client, funded.tenant, "087800001230", product_code="XLD10")
        assert created.status_code == 202, created.json
        drain(app, lambda: transaction(app, funded.tenant.id, created.json["id"])["status"] == "succeeded")
        purchases = [r["body"] for r in sim.requests if r["path"] == "/v1/transaction" and "buyer_sku_code" in r["body"]]
    shown = cli("providers", "show", config_id)[1].splitlines()[-1]
    assert shown == f"callback URL: {cli.public_url}/callbacks/digiflazz/{config_id}"
    assert [p["cb_url"] for p in purchases] == [f"{cli.public_url}/callbacks/digiflazz/{config_id}"]


def test_a_configuration_with_history_is_retired_and_its_purchases_in_flight_still_settle(
        app, client, funded, fast, sandbox, cli):
    first = in_flight(app, client, funded)  # 6666: unknown, a status check will say success
    second = in_flight(app, client, funded, "081211116666")
    code, out, err = cli("providers", "remove", sandbox)
    assert code == 0, err
    assert out.strip() == (f"{sandbox} retired, not deleted: it has history (2 transactions, 2 attempts); no new "
                           "purchase goes to it, purchases already sent keep their status checks and callbacks")
    shown = json.loads(cli("providers", "show", sandbox, "--json")[1])
    assert shown["state"] == "retired" and shown["in_flight"] == 2 and shown["retired_at"]
    [(target, actor_type, after)] = _audit(app, "provider_config.retired")
    assert (target, actor_type, after["history"]["transactions"]) == (sandbox, "cli", 2)

    # no new purchase goes to it (it was the product's only configuration)
    refused = buy(client, funded.tenant, "081212345678")
    assert refused.status_code == 422, refused.json
    # and it cannot be switched on again
    code, _, err = cli("providers", "enable", sandbox)
    assert code == 1 and "is retired" in err

    # a signed callback of a purchase already sent there is still received and settles it
    reference = second["attempts"][0]["reference"]
    raw = json.dumps({"ref_id": reference, "rc": "00", "sn": "SN-1", "sku": "TEL10"}).encode()
    answer = client.post(f"/callbacks/sandbox/{sandbox}", data=raw, headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: sign(callback_secret(app, sandbox), raw)})
    assert answer.status_code == 200 and answer.json["verified"] is True
    drain(app, lambda: transaction(app, funded.tenant.id, second["id"])["status"] == "succeeded")
    # the other one's status check still goes to the provider
    check_now(app)
    assert transaction(app, funded.tenant.id, first["id"])["status"] == "succeeded"
    code, _, err = cli("providers", "remove", sandbox)
    assert code == 1 and err.strip() == f"rop: error: {sandbox} is retired already"


def test_a_configuration_without_history_is_deleted(app, cli, tenant_factory):
    tenant = tenant_factory()
    config_id = cli("providers", "add", "sandbox", "--name", "Unused")[1].strip()
    shared = cli("providers", "add", "sandbox", "--name", "Shared")[1].strip()
    assert cli("providers", "enable", shared, "--tenant", tenant.slug)[0] == 0
    for removed in (config_id, shared):
        code, out, _ = cli("providers", "remove", removed)
        assert code == 0 and out.strip() == f"{removed} deleted (it had no history)"
        code, _, err = cli("providers", "show", removed)
        assert code == 1 and err.strip() == f"rop: error: no provider configuration {removed}"
    assert sorted(t for t, _, _ in _audit(app, "provider_config.deleted")) == sorted([config_id, shared])
    from hub.providers.models import ProviderConfigTenant

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.scalars(select(ProviderConfigTenant)).all() == []
