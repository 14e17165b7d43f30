"""The provider kill switch in the admin UI: it says how many purchases are in flight, and
switching off stops new purchases only — a purchase in flight is still settled by its
provider's answer (tests/transactions/test_kill_switch.py has the rest)."""
from __future__ import annotations

import re

from tests.transactions.conftest import buy, captured, check_now, in_flight, transaction


def test_disabling_a_configuration_keeps_asking_it_about_purchasesin_flight(app, client, funded, fast, sandbox,
                                                                           admin_kit):
    found = in_flight(app, client, funded)
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    token = admin_kit.csrf_from(client, "/admin/providers/")
    # Disable asks first, on a page that says how many purchases are in flight there; it changes nothing
    asked = client.post(f"/admin/providers/{sandbox}/enabled", data={"csrf_token": token, "enabled": "0"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and f"Switch {sandbox} off?" in page
    assert re.search(r"No new purchase goes to it\. The 1 purchase\(s\) in flight there keep", page)
    assert "Switch it off" in page and "<td>yes<br>" in client.get("/admin/providers/").get_data(as_text=True)
    switched = client.post(f"/admin/providers/{sandbox}/enabled",
                           data={"csrf_token": token, "enabled": "0", "confirm": "1"}, follow_redirects=True)
    assert "switched off: no new purchase goes to it. 1 purchase(s) in flight there" in switched.get_data(as_text=True)

    check_now(app)
    after = transaction(app, funded.tenant.id, found["id"])
    assert after["status"] == "succeeded" and after["serial_number"]
    outcomes = [e["detail"] for e in after["timeline"] if e["kind"] == "outcome"]
    assert [(o["via"], o["state"]) for o in outcomes] == [("purchase", "unknown"), ("status_check", "success")]
    assert not any("switched off" in str(e["detail"]) for e in after["timeline"])
    captured(app, funded, after)
    # New purchases do not go there any more.
    assert buy(client, funded.tenant, "081200001234").status_code == 422


