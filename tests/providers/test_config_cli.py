"""``rop providers add|show|enable|disable`` as an operator uses them: tenants named by slug or
id (an unknown one refused in one line), settings errors naming the field, credentials and
settings kept apart as the plugin declares them, the configuration shown with its state and
callback URL."""
from __future__ import annotations

import json

import pytest

from hub.db import unit_of_work
from hub.providers import service


def _configs(app) -> list[dict]:
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return [{"id": c.id, "tenant_id": c.tenant_id} for c in service.list_configs(uow)]


def test_a_tenants_own_configuration_is_named_by_slug_or_id_and_an_unknown_tenant_is_refused(app, cli,
                                                                                              tenant_factory):
    tenant = tenant_factory()
    code, out, _ = cli("providers", "add", "sandbox", "--name", "By slug", "--tenant", tenant.slug)
    assert code == 0
    by_slug = out.strip()
    code, out, _ = cli("providers", "add", "sandbox", "--name", "By id", "--tenant", tenant.id)
    assert code == 0
    by_id = out.strip()
    assert {c["id"]: c["tenant_id"] for c in _configs(app)} == {by_slug: tenant.id, by_id: tenant.id}

    code, out, err = cli("providers", "add", "sandbox", "--name", "Nobody's", "--tenant", "no-such-tenant")
    assert code == 1 and out == ""
    assert err.strip() == "rop: error: no tenant 'no-such-tenant' (give a tenant's slug or id; rop tenants list)"
    assert len(_configs(app)) == 2  # nothing written

    # enabling a platform-wide configuration for one tenant: the same rule
    code, out, _ = cli("providers", "add", "sandbox", "--name", "Shared")
    shared = out.strip()
    code, out, _ = cli("providers", "enable", shared, "--tenant", tenant.slug)
    assert code == 0 and out.strip() == f"{shared} enabled for {tenant.id}"
    code, _, err = cli("providers", "disable", shared, "--tenant", "no-such-tenant")
    assert code == 1 and "no tenant 'no-such-tenant'" in err and err.count("\n") == 1
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        assert {c.id for c in service.usable_configs(uow, tenant.id)} == {by_slug, by_id, shared}


@pytest.mark.parametrize(("settings", "credentials", "says"), [
    (None, {"username": "u"}, "provider digiflazz: api_key: required"),
    ({"foo": 1}, {"username": "u", "api_key": "k"},
     "provider digiflazz: foo: unknown setting (known: base_url, max_price, testing, timeout)"),
    ({"api_key": "k"}, {"username": "u"},
     "provider digiflazz: api_key: a credential, not a setting (give it with the credentials)"),
    (None, {"username": "u", "api_key": "k", "base_url": "https://x.example"},
     "provider digiflazz: base_url: a setting, not a credential (give it with the settings)"),
    (None, {"username": "u", "api_key": "k", "pin": "1"},
     "provider digiflazz: pin: unknown credential (known: api_key, username, webhook_secret)"),
    ({"timeout": "soon"}, {}, ("provider digiflazz: api_key: required; timeout: Not a valid number.; "
                               "username: required")),
])
def test_settings_errors_name_the_field(app, cli, settings, credentials, says):
    args = ["providers", "add", "digiflazz", "--name", "Digiflazz", "--credentials", json.dumps(credentials)]
    if settings is not None:
        args += ["--settings", json.dumps(settings)]
    code, out, err = cli(*args)
    assert code == 1 and out == ""
    assert err.strip() == f"rop: error: {says}"
    assert _configs(app) == []


def test_the_providers_list_their_settings_and_credentials_apart(app, cli):
    code, out, _ = cli("providers", "list", "--json")
    providers = {p["code"]: p for p in json.loads(out)["providers"]}
    assert providers["digiflazz"]["credentials"] == ["api_key", "username", "webhook_secret"]
    assert providers["digiflazz"]["settings"] == ["base_url", "max_price", "testing", "timeout"]
    assert providers["sandbox"]["credentials"] == ["callback_secret"]
    code, out, _ = cli("providers", "list")
    assert code == 0 and "credentials: api_key, username, webhook_secret" in out


def test_show_prints_the_configuration_masked_its_state_and_the_callback_url(app, cli, tenant_factory):
    tenant = tenant_factory()
    _, out, _ = cli("providers", "add", "digiflazz", "--name", "Main", "--tenant", tenant.slug,
                       "--settings", '{"testing": true}',
                       "--credentials", '{"username": "hubuser", "api_key": "very-secret-key"}')
    config_id = out.strip()
    code, out, _ = cli("providers", "show", config_id)
    assert code == 0 and "very-secret-key" not in out
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["id"].strip() == config_id and lines["tenant"].strip() == tenant.id
    assert lines["state"].strip() == "on"
    assert json.loads(lines["settings"]) == {"testing": True}
    assert json.loads(lines["credentials"])["api_key"] == "****ey"
    assert out.splitlines()[-1] == f"callback URL: {cli.public_url}/callbacks/digiflazz/{config_id}"
    assert cli("providers", "disable", config_id)[0] == 0
    code, out, _ = cli("providers", "show", config_id, "--json")
    shown = json.loads(out)
    assert (shown["state"], shown["callback_url"]) == ("off", f"{cli.public_url}/callbacks/digiflazz/{config_id}")
    code, out, err = cli("providers", "show", "pcf_nope")
    assert code == 1 and err.strip() == "rop: error: no provider configuration pcf_nope"
