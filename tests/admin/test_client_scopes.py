"""The admin's New client form: least privilege, and never the platform's top-up scope."""
from __future__ import annotations

import re

from sqlalchemy import select

from hub.db import unit_of_work
from hub.tenancy.models import ApiClient
from hub.tenancy.scopes import DEFAULT_TENANT_SCOPES


def test_the_new_client_form_starts_with_read_and_purchase_scopes_and_offers_no_topup(app, client, admin_kit,
                                                                                       tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    assert set(re.findall(r'name="scopes" value="([^"]+)" checked', page)) == DEFAULT_TENANT_SCOPES
    assert 'value="wallets:topup"' not in page
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    # Every box ticked, as the attack did: a working client, without the top-up scope.
    boxes = re.findall(r'name="scopes" value="([^"]+)"', page)
    made = client.post(f"/admin/tenants/{tenant.id}/clients",
                       data={"csrf_token": token, "name": "everything", "scopes": boxes}, follow_redirects=True)
    assert made.status_code == 200 and 'id="client-secret"' in made.get_data(as_text=True)
    # A hand-made form asking for it is refused and creates nothing.
    refused = client.post(f"/admin/tenants/{tenant.id}/clients",
                          data={"csrf_token": token, "name": "sneaky", "scopes": ["wallets:read", "wallets:topup"]})
    assert refused.status_code == 302  # back to the form, with the reason flashed
    flashed = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "may not hold the scope" in flashed and "wallets:topup" in flashed
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = {c.name: c.scope_set for c in uow.session.scalars(select(ApiClient).where(
            ApiClient.tenant_id == tenant.id))}
    assert "sneaky" not in rows
    assert "wallets:topup" not in rows["everything"] and "wallets:write" in rows["everything"]
