"""Provider configurations in the admin UI: credentials write-only, masked, encrypted, audited."""
from __future__ import annotations

from sqlalchemy import select

from hub.db import unit_of_work

SECRET = "super-secret-callback-key-123456"


def test_credentials_are_written_encrypted_shown_masked_and_never_audited(app, client, admin_kit):
    from hub.tenancy.models import AuditEntry

    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, "/admin/providers/")
    response = client.post("/admin/providers/new", data={
        "csrf_token": token, "provider_code": "sandbox", "name": "Sandbox A",
        "settings": "latency_ms=5", "credentials": f"callback_secret={SECRET}"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Sandbox A" in page
    assert SECRET not in page and "****56" in page
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        entry = uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "provider_config.created"))
        assert SECRET not in str(entry.after) and entry.after["credential_keys"] == ["callback_secret"]
        rows = uow.session.execute(select(AuditEntry.after)).scalars().all()
    assert all(SECRET not in str(r) for r in rows)


def test_an_operator_may_flip_the_kill_switch_but_not_touch_credentials(app, client, admin_kit):
    from hub.providers.service import add_config, list_configs

    with app.test_request_context(), unit_of_work(app.extensions["rop"].db) as uow:
        config_id = add_config(uow, "sandbox", "Sandbox B").id
        uow.commit()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    token = admin_kit.csrf_from(client, "/admin/providers/")
    assert client.post(f"/admin/providers/{config_id}/credentials",
                       data={"csrf_token": token, "credentials": "callback_secret=x"}).status_code == 403
    assert client.post("/admin/providers/new", data={"csrf_token": token, "provider_code": "sandbox",
                                                     "name": "no"}).status_code == 403
    assert client.post(f"/admin/providers/{config_id}/enabled",
                       data={"csrf_token": token, "enabled": "0", "confirm": "1"}).status_code == 302
    with app.test_request_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert [c.enabled for c in list_configs(uow)] == [False]


def test_a_tenants_own_configuration_names_its_tenant_from_a_picker(app, client, admin_kit, tenant_factory):
    """Not a typed id: before, any text was stored as the tenant id (a slug, a typo), and the
    tenant's products showed as unavailable with no hint."""
    from hub.providers.service import list_configs

    tenant = tenant_factory("Warung Budi")
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get("/admin/providers/").get_data(as_text=True)
    assert '<select name="tenant_id" id="provider-tenant">' in page
    assert f'<option value="{tenant.id}">Warung Budi ({tenant.slug})</option>' in page
    token = admin_kit.csrf_from(client, "/admin/providers/")
    made = client.post("/admin/providers/new", data={"csrf_token": token, "provider_code": "sandbox",
                                                     "name": "Own", "tenant_id": tenant.id})
    assert made.status_code == 302
    refused = client.post("/admin/providers/new", data={"csrf_token": token, "provider_code": "sandbox",
                                                        "name": "Nobody's", "tenant_id": "no-such-tenant"},
                          follow_redirects=True)
    assert "no tenant &#39;no-such-tenant&#39;" in refused.get_data(as_text=True)
    with app.test_request_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert [(c.name, c.tenant_id) for c in list_configs(uow)] == [("Own", tenant.id)]
