"""The dashboard: transactions per hour by status, providers' success rate and latency, wallet
totals — server-side SVG from the services' own figures."""
from __future__ import annotations

import re

from tests.transactions.conftest import FUNDS, buy, drain, transaction


def test_the_dashboard_charts_the_last_day_of_transactions_and_providers(app, client, admin_kit, funded, fast):
    ids = [buy(client, funded.tenant, number).json["id"] for number in ("081200001234", "081200001234",
                                                                        "081200009999")]
    drain(app, until=lambda: all(transaction(app, funded.tenant.id, i)["status"] in ("succeeded", "failed")
                                 for i in ids))
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = client.get("/admin/").get_data(as_text=True)
    chart = re.search(r'<svg id="hourly-chart".*?</svg>', page, re.DOTALL).group(0)
    assert len(re.findall(r'<rect class="s-succeeded"', chart)) == 1  # one hour, one stacked bar per status
    assert len(re.findall(r'<rect class="s-failed"', chart)) == 1
    assert "succeeded: 2" in chart and "failed: 1" in chart
    assert 'id="total-succeeded">2<' in page and 'id="total-failed">1<' in page
    row = re.search(r"<tr><td>sandbox</td>(.*?)</tr>", page, re.DOTALL).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[:5] == ["3", "0", "2", "1", "0"]  # attempts, not sent, success, failed, rejected
    assert "66.7 %" in row
    price = transaction(app, funded.tenant.id, ids[0])["price"]
    assert f"<td>IDR</td><td>1</td><td>IDR {FUNDS - 2 * price:,}</td><td>IDR 0</td>" in page


def test_the_transaction_figures_are_shared_for_a_short_while(app, client, admin_kit, funded, fast):
    from rop_admin import charts

    admin_kit.login(client, admin_kit.make_admin(app))
    assert 'id="total-succeeded">0<' in client.get("/admin/").get_data(as_text=True)
    trx_id = buy(client, funded.tenant, "081200001234").json["id"]
    drain(app, until=lambda: transaction(app, funded.tenant.id, trx_id)["status"] == "succeeded")
    assert 'id="total-succeeded">0<' in client.get("/admin/").get_data(as_text=True)  # cached
    for key in app.extensions["rop"].redis.scan_iter("rop:admin:dashboard:stats:*"):
        app.extensions["rop"].redis.delete(key)  # what STATS_TTL seconds do
    assert charts.STATS_TTL <= 60
    assert 'id="total-succeeded">1<' in client.get("/admin/").get_data(as_text=True)


def test_an_empty_dashboard_says_so(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="hourly-chart"' in page and "No provider calls in the last 24 hours." in page
