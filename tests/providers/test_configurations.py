"""Provider configurations: encrypted credentials, rotation, kill switch, tenant enablement."""
from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from hub.app import create_app
from hub.cli import main
from hub.db import unit_of_work
from hub.errors import ValidationFailed
from hub.providers import client, crypto, service
from hub.providers.contract import PurchaseRequest, State, StatusRequest


@pytest.fixture
def uow(app):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as work:
        yield work


def test_credentials_are_encrypted_at_rest_and_masked(app, uow):
    row = service.add_config(uow, "sandbox", "Sandbox", credentials={"callback_secret": "very-secret-value"})
    uow.commit()
    stored = uow.session.execute(text("select credentials_encrypted from provider_configs")).scalar_one()
    assert "very-secret-value" not in stored
    assert crypto.decrypt(app.extensions["rop"].config.encryption_keys, stored) == \
        {"callback_secret": "very-secret-value"}
    shown = service.masked(row)
    assert shown["credentials"] == {"callback_secret": "****ue"}
    assert "very-secret-value" not in json.dumps(shown, default=str)


def test_settings_are_validated_by_the_plugin_schema(app, uow):
    with pytest.raises(ValidationFailed) as info:
        service.add_config(uow, "sandbox", "Bad", settings={"fault_rate": 7})
    assert "fault_rate" in info.value.errors


def test_rotating_keys_re_encrypts_every_row_under_the_new_key(config, app):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        service.add_config(uow, "sandbox", "One", credentials={"callback_secret": "a" * 12})
        service.add_config(uow, "sandbox", "Two", credentials={"callback_secret": "b" * 12})
        uow.commit()
    old = config.encryption_keys
    new_key = Fernet.generate_key().decode()
    rotated = create_app(config.__class__(**{**config.__dict__, "encryption_keys": (new_key, *old)}))
    try:
        with rotated.app_context(), unit_of_work(rotated.extensions["rop"].db) as uow:
            assert service.rotate_keys(uow) == 2  # old rows still readable during rotation
            uow.commit()
            tokens = list(uow.session.execute(text("select credentials_encrypted from provider_configs"))
                          .scalars())
        only_new = (new_key,)
        assert sorted(crypto.decrypt(only_new, t)["callback_secret"] for t in tokens) == ["a" * 12, "b" * 12]
        with pytest.raises(crypto.CredentialsError):
            crypto.decrypt(old, tokens[0])
    finally:
        rotated.extensions["rop"].close()


def test_kill_switch_stops_calls_at_once(app, uow):
    row = service.add_config(uow, "sandbox", "Sandbox")
    uow.commit()
    assert client.purchase(uow, row.id, PurchaseRequest("k1", "TEL10", "081212345678")).state is State.SUCCESS
    service.set_enabled(uow, row.id, False)
    uow.commit()
    result = client.purchase(uow, row.id, PurchaseRequest("k2", "TEL10", "081212345678"))
    assert result.state is State.REJECTED and "switched off" in result.message
    assert service.usable_configs(uow, "ten_a") == []
    # A purchase already sent is still asked about: only the provider knows its outcome.
    status = client.check_status(uow, row.id, StatusRequest("k1", "TEL10", "081212345678"))
    assert status.state is State.SUCCESS


def test_platform_config_can_be_enabled_per_tenant_and_tenant_configs_serve_only_their_tenant(app, uow):
    from hub.cli.base import operator_context
    from hub.tenancy.service import create_tenant

    ten_a = create_tenant(operator_context(), uow, "A", "tenant-a").id
    ten_b = create_tenant(operator_context(), uow, "B", "tenant-b").id
    shared = service.add_config(uow, "sandbox", "Shared")
    own = service.add_config(uow, "sandbox", "A's own", tenant_id="tenant-a")  # the slug names it
    uow.commit()
    assert own.tenant_id == ten_a
    assert {r.id for r in service.usable_configs(uow, ten_a)} == {shared.id, own.id}
    assert {r.id for r in service.usable_configs(uow, ten_b)} == {shared.id}
    service.enable_for_tenant(uow, shared.id, ten_b)
    uow.commit()
    assert {r.id for r in service.usable_configs(uow, ten_a)} == {own.id}
    assert {r.id for r in service.usable_configs(uow, ten_b)} == {shared.id}


def test_cli_adds_lists_masked_and_switches_off(app, monkeypatch, capsys, config):
    for key, value in {"ROP_DATABASE_URL": config.database_url, "ROP_REDIS_URL": config.redis_url,
                       "ROP_INSTANCE_PATH": str(config.instance_path),
                       "ROP_ENCRYPTION_KEYS": ",".join(config.encryption_keys)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO('{"callback_secret": "cli-secret-123"}'))
    assert main(["providers", "add", "sandbox", "--name", "CLI", "--credentials", "-"]) == 0
    config_id = capsys.readouterr().out.strip()
    assert main(["providers", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert "cli-secret-123" not in out and config_id in out
    assert main(["providers", "disable", config_id]) == 0
    assert main(["providers", "balance", config_id]) == 1
    assert "switched off" in capsys.readouterr().err
    assert main(["providers", "enable", config_id]) == 0
    capsys.readouterr()
    assert main(["providers", "balance", config_id]) == 0
    assert capsys.readouterr().out.strip() == "100000000"
    assert main(["providers", "rotate-keys"]) == 0
    assert main(["providers", "add", "nope", "--name", "x"]) == 1
    assert "no provider with code 'nope'" in capsys.readouterr().err


def test_cli_tenant_options_take_the_slug_and_the_tenants_own_configuration_sells_to_it(
        app, client, capsys, cli_env, tenant_factory):
    """``rop providers add --tenant SLUG`` once stored the slug as the tenant id: the tenant's
    own configuration then served nobody (its products unavailable, priced null)."""
    owner, other = tenant_factory(), tenant_factory()
    assert main(["providers", "add", "sandbox", "--name", "Owner's own", "--tenant", owner.slug]) == 0
    own_id = capsys.readouterr().out.strip()
    assert main(["catalog", "sync", "--config", own_id]) == 0
    capsys.readouterr()
    mine, theirs = ({p["code"]: p for p in client.get("/v1/products?q=TEL10", headers=t.headers).get_json()["items"]}
                    for t in (owner, other))
    assert mine["TEL10"]["active"] is True and mine["TEL10"]["price"] > 0
    assert (theirs["TEL10"]["active"], theirs["TEL10"]["price"]) == (False, None)

    assert main(["providers", "add", "sandbox", "--name", "Shared"]) == 0
    shared_id = capsys.readouterr().out.strip()
    assert main(["providers", "enable", shared_id, "--tenant", other.slug]) == 0
    assert capsys.readouterr().out.strip() == f"{shared_id} enabled for {other.id}"
    assert main(["providers", "disable", shared_id, "--tenant", other.slug]) == 0
    assert f"{shared_id} disabled for {other.id}" in capsys.readouterr().out
    assert main(["providers", "list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["configurations"]}
    assert rows[own_id]["tenant_id"] == owner.id

    for args in (["providers", "add", "sandbox", "--name", "x", "--tenant", "nope"],
                 ["providers", "enable", shared_id, "--tenant", "nope"],
                 ["providers", "disable", shared_id, "--tenant", "nope"]):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no tenant 'nope'" in err
    assert main(["providers", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["configurations"]) == 2
