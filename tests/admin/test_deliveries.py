"""Webhook deliveries in the admin UI against a real receiver on loopback: the list (every
tenant or one, by state), the detail (event, payload, URL, responses, the transaction), and
resend through its confirmation page (once per confirmation, audited)."""
from __future__ import annotations

import html
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from hub.db import unit_of_work
from tests.transactions.conftest import buy, drain

_KEY = re.compile(r'name="key" value="([^"]+)"')


@pytest.fixture
def receiver():
    """Answers each delivery's first POST 503 with a JSON body, then 200 with another; records each POST."""
    bodies: list[bytes] = []
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            first = self.headers["ROP-Delivery-Id"] not in seen
            seen.add(self.headers["ROP-Delivery-Id"])
            answer = b'{"error": "busy <retry later>"}' if first else b'{"ok": true, "seen": "tenant-side"}'
            self.send_response(503 if first else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.bodies = bodies
    yield server
    server.shutdown()
    server.server_close()


def _deliveries(app, tenant_id):
    from hub.bus.models import WebhookDelivery

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(d.id, d.event_type, d.status) for d in uow.session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id))]


def test_the_delivery_page_shows_event_payload_url_responses_and_transaction(app, client, admin_kit, funded,
                                                                           receiver, fast):
    tenant = funded.tenant
    hook = client.put("/v1/webhook", json={"url": receiver.url, "schedule": [0, 0]}, headers=tenant.headers)
    assert hook.status_code == 200
    trx = buy(client, tenant, "081200001234").get_json()["id"]
    accepted = lambda: [d for d in _deliveries(app, tenant.id) if d[1] == "transaction.accepted"]
    drain(app, until=lambda: accepted() and accepted()[0][2] == "delivered")
    delivery_id = accepted()[0][0]

    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    listing = client.get("/admin/deliveries/").get_data(as_text=True)  # every tenant
    from hub.tenancy.service import get_tenant

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        name = get_tenant(uow, tenant.id).name
    assert delivery_id in listing and html.escape(name) in listing
    assert delivery_id in client.get(f"/admin/deliveries/?tenant={tenant.id}&status=delivered").get_data(as_text=True)
    assert delivery_id not in client.get("/admin/deliveries/?status=failed").get_data(as_text=True)
    bad = client.get("/admin/deliveries/?status=lost")
    assert bad.status_code == 422 and "status must be one of" in bad.get_data(as_text=True)

    page = html.unescape(client.get(f"/admin/deliveries/{tenant.id}/{delivery_id}").get_data(as_text=True))
    assert "transaction.accepted" in page and "delivered" in page
    assert f'"id": "{trx}"' in page  # the payload as sent
    assert receiver.url in page  # the webhook URL, now and per attempt
    assert '{"error": "busy <retry later>"}' in page and "503" in page  # the first answer
    assert '{"ok": true, "seen": "tenant-side"}' in page and "200" in page
    assert f'href="/admin/transactions/{trx}"' in page


def test_resend_asks_first_and_makes_one_new_delivery_per_confirmation(app, client, admin_kit, funded, receiver,
                                                                      fast):
    from hub.tenancy.models import AuditEntry

    tenant = funded.tenant
    client.put("/v1/webhook", json={"url": receiver.url, "schedule": [0, 0]}, headers=tenant.headers)
    buy(client, tenant, "081200001234")
    before = _deliveries(app, tenant.id)
    delivery_id = before[0][0]
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))

    confirm = client.get(f"/admin/deliveries/{tenant.id}/{delivery_id}/resend")
    assert confirm.status_code == 200 and receiver.url in confirm.get_data(as_text=True)
    assert len(_deliveries(app, tenant.id)) == len(before)  # asking changes nothing
    key = _KEY.search(confirm.get_data(as_text=True)).group(1)
    token = admin_kit.csrf_from(client, f"/admin/deliveries/{tenant.id}/{delivery_id}/resend")
    form = {"csrf_token": token, "key": key}
    first = client.post(f"/admin/deliveries/{tenant.id}/{delivery_id}/resend", data=form, follow_redirects=True)
    assert "Resent as whd_" in first.get_data(as_text=True)
    after = _deliveries(app, tenant.id)
    assert len(after) == len(before) + 1
    new_id = next(d[0] for d in after if d[0] not in {b[0] for b in before})
    # The same confirmation sent again (a double click, a reload) resends nothing more.
    again = client.post(f"/admin/deliveries/{tenant.id}/{delivery_id}/resend", data=form, follow_redirects=True)
    assert f"Already resent as {new_id}" in again.get_data(as_text=True)
    assert len(_deliveries(app, tenant.id)) == len(after)
    # Without the confirmation page's key, nothing is sent.
    bare = client.post(f"/admin/deliveries/{tenant.id}/{delivery_id}/resend", data={"csrf_token": token},
                       follow_redirects=True)
    assert "confirmation page" in bare.get_data(as_text=True)
    assert len(_deliveries(app, tenant.id)) == len(after)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        entries = list(uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "webhook_delivery.resent")))
        assert [(e.target_id, e.after["new_delivery"], e.actor) for e in entries] == [
            (delivery_id, new_id, "admin:op@example.com")]
        from hub.bus.models import WebhookDelivery

        assert uow.session.scalar(select(func.count()).select_from(WebhookDelivery)
                                  .where(WebhookDelivery.id == new_id, WebhookDelivery.status == "pending")) == 1
