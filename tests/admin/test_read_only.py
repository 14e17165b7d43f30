"""The read-only ``viewer`` role: every page, no action. Every POST endpoint under /admin
(found in the app's URL map, so a view added later is covered too) answers 403 to a viewer,
and no page shows a viewer an action form."""
from __future__ import annotations

import re

import pytest

from tests.transactions.conftest import buy

#: The forms a viewer may send: logging in and out, and a one-time invitation or reset link.
VIEWER_FORMS = {"admin.login", "admin.logout", "admin_users.link"}
_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_POST_FORM = re.compile(r'<form[^>]*method="post"[^>]*>', re.IGNORECASE)


def _admin_rules(app, method: str):
    return [r for r in app.url_map.iter_rules()
            if r.rule.startswith("/admin") and method in r.methods and r.endpoint not in VIEWER_FORMS
            and not r.endpoint.endswith("static")]


def _fill(rule, values: dict[str, str]) -> str | None:
    """The rule's path with its arguments from ``values`` (None when one is unknown)."""
    missing = [name for name in rule.arguments if name not in values]
    if missing:
        return None
    return _ARG.sub(lambda m: values[m.group(1)], rule.rule)


def test_a_viewer_gets_403_from_every_post_endpoint(app, client, admin_kit):
    rules = _admin_rules(app, "POST")
    endpoints = {r.endpoint for r in rules}
    # The enumeration finds the actions (a sample: money, security, users, bus).
    assert {"admin_wallets.topup", "admin_transactions.refund", "admin_clients.rotate", "admin_users.invite",
            "admin_users.status", "admin_deliveries.resend", "admin_dead_letters.discard",
            "admin_dead_letters.replay", "admin_tenants.create"} <= endpoints
    admin_kit.login(client, admin_kit.make_admin(app, "look@example.com", role="viewer"))
    token = admin_kit.csrf_from(client, "/admin/")
    for rule in rules:
        path = _ARG.sub("x", rule.rule)
        response = client.post(path, data={"csrf_token": token, "ids": ["x"], "confirmed": "1", "key": "k"})
        assert response.status_code == 403, (rule.endpoint, response.status_code)
        assert "viewer" in response.get_data(as_text=True)
    # Still logged in, still able to look.
    assert client.get("/admin/").status_code == 200


@pytest.fixture
def world(app, client, funded):
    """A tenant with a webhook, a transaction and its delivery, a wallet, a client."""
    from sqlalchemy import select

    from hub.bus.models import WebhookDelivery
    from hub.db import unit_of_work
    from hub.tenancy.service import list_clients

    tenant = funded.tenant
    assert client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/hook"}, headers=tenant.headers).status_code == 200
    trx = buy(client, tenant, "081200001234").get_json()["id"]
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        delivery = uow.session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.tenant_id == tenant.id))
        client_id = list_clients(uow, tenant.id)[0].id
    assert delivery
    return {"tenant_id": tenant.id, "wallet_id": funded.wallet_id, "transaction_id": trx, "code": "TEL10",
            "delivery_id": delivery, "client_id": client_id}


def _pages(app, world):
    for rule in _admin_rules(app, "GET"):
        if rule.rule.endswith((".json", ".csv")) or "/link/" in rule.rule or rule.endpoint == "admin.logout":
            continue
        path = _fill(rule, world)
        if path is not None:
            yield rule.endpoint, path


def test_a_viewer_sees_every_page_and_no_action_form(app, client, admin_kit, world):
    admin_kit.make_admin(app)
    operator = app.test_client()
    admin_kit.login(operator, admin_kit.make_admin(app, "op@example.com", role="operator"))
    admin_kit.login(client, admin_kit.make_admin(app, "look@example.com", role="viewer"))
    seen, operator_forms = set(), 0
    for endpoint, path in _pages(app, world):
        response = client.get(path)
        if response.status_code == 403:  # a confirmation page of an action (resend): not for a viewer
            assert endpoint == "admin_deliveries.confirm_resend", endpoint
            continue
        if response.status_code == 302:  # a page that only sends elsewhere (never to the login)
            assert "/admin/login" not in response.headers["Location"], endpoint
            continue
        assert response.status_code == 200, (endpoint, path, response.status_code)
        seen.add(endpoint)
        forms = _POST_FORM.findall(response.get_data(as_text=True))
        assert [f for f in forms if "/admin/logout" not in f] == [], (endpoint, forms)
        operator_forms += len([f for f in _POST_FORM.findall(operator.get(path).get_data(as_text=True))
                               if "/admin/logout" not in f])
    assert {"admin.index", "admin_tenants.detail", "admin_wallets.detail", "admin_transactions.detail",
            "admin_deliveries.detail", "admin_dead_letters.index", "admin_users.index", "admin_catalog.detail",
            "admin_providers.index", "admin_bulk.index"} <= seen
    assert operator_forms > 5  # the same pages give an operator their actions


def test_a_viewer_sees_pending_approvals_and_walletless_tenants_without_their_buttons(app, client, admin_kit,
                                                                                      tenant_factory):
    """The pages whose action forms depend on the data: a pending four-eyes approval, and a
    tenant with no wallet yet (the operator's *Open main wallet*)."""
    funded, bare = tenant_factory(), tenant_factory()
    operator = app.test_client()
    admin_kit.login(operator, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = operator.get(f"/admin/wallets/?tenant={funded.id}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    opened = operator.post(f"/admin/wallets/{funded.id}/open", data={"csrf_token": token})
    wallet_path = opened.headers["Location"]
    asked = operator.post(f"{wallet_path}/topup", data={"csrf_token": token, "ref": "big-1", "amount": "150000000",
                                                        "reason": "wire 77", "confirm": "1"}, follow_redirects=True)
    approval_id = re.search(r"(apr_[0-9a-f]+)", asked.get_data(as_text=True)).group(1)
    second = app.test_client()
    admin_kit.login(second, admin_kit.make_admin(app, "op2@example.com", role="operator"))
    assert f"/admin/approvals/{approval_id}/approve" in second.get("/admin/approvals/").get_data(as_text=True)
    assert 'id="open-main-wallet"' in second.get(f"/admin/wallets/?tenant={bare.id}").get_data(as_text=True)

    admin_kit.login(client, admin_kit.make_admin(app, "look@example.com", role="viewer"))
    approvals = client.get("/admin/approvals/").get_data(as_text=True)
    assert approval_id in approvals and "an operator or admin decides" in approvals
    assert [f for f in _POST_FORM.findall(approvals) if "/admin/logout" not in f] == []
    wallets = client.get(f"/admin/wallets/?tenant={bare.id}").get_data(as_text=True)
    assert 'id="no-wallet"' in wallets and 'id="open-main-wallet"' not in wallets
    assert [f for f in _POST_FORM.findall(wallets) if "/admin/logout" not in f] == []
