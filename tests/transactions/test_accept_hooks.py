"""The plugin hooks on the accept path keep their promises on both primitives (the function
on PostgreSQL, the Python path on SQLite; docs/hooks.md): ``before_wallet_debit`` is asked
before anything is written — a veto is a 403 with no row left — and a replay of an accepted
purchase is answered whatever it says; ``price_product`` runs on every purchase, warm cache
or not."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.plugins.markers import hookimpl
from hub.transactions.models import Transaction
from hub.wallets.models import Hold, Journal
from tests.transactions.conftest import FUNDS, buy, wallet


class Veto:
    def __init__(self):
        self.asked: list[tuple[str, int, str, str]] = []
        self.refuse = False

    @hookimpl
    def before_wallet_debit(self, ctx, wallet_id, amount, currency, reason):
        self.asked.append((wallet_id, amount, currency, reason))
        return "over the partner's limit" if self.refuse else None


class Markup:
    def __init__(self):
        self.priced = 0

    @hookimpl
    def price_product(self, tenant_id, product_code, cost, product):
        self.priced += 1
        return cost + product["margin"] + 1


@pytest.fixture
def plugins(app):
    host = app.extensions["rop"].extras["plugins"]
    veto, markup = Veto(), Markup()
    host.pm.register(veto)
    host.pm.register(markup)
    yield veto, markup
    host.pm.unregister(veto)
    host.pm.unregister(markup)


def _rows(app, tenant_id: str) -> tuple[int, int, int]:
    with app.extensions["rop"].db.engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(model).where(model.tenant_id == tenant_id))
                     .scalar() for model in (Transaction, Hold, Journal))


def test_a_veto_writes_nothing_and_a_replay_is_answered_whatever_the_plugin_says(app, client, funded, plugins):
    veto, _markup = plugins
    accepted = buy(client, funded.tenant, "081234567890", ref_id="first")
    assert accepted.status_code == 202, accepted.json
    trx_id, price = accepted.json["id"], accepted.json["price"]
    assert veto.asked == [(funded.wallet_id, price, "IDR", f"hold:transaction:{trx_id}")]
    before = _rows(app, funded.tenant.id)

    veto.refuse = True
    refused = buy(client, funded.tenant, "081234567890", ref_id="second")
    assert refused.status_code == 403 and refused.json["detail"] == "debit refused: over the partner's limit"
    assert _rows(app, funded.tenant.id) == before  # nothing of the refused purchase
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - price, price)

    replay = buy(client, funded.tenant, "081234567890", ref_id="first")
    assert replay.status_code == 200 and replay.json["id"] == trx_id, replay.json
    conflict = buy(client, funded.tenant, "081234567899", ref_id="first")
    assert conflict.status_code == 409, conflict.json
    assert _rows(app, funded.tenant.id) == before


def test_price_product_runs_on_every_purchase_with_the_catalog_cached(app, client, funded, plugins):
    _veto, markup = plugins
    prices = []
    for n in range(3):
        answer = buy(client, funded.tenant, f"08123456789{n}")
        assert answer.status_code == 202, answer.json
        prices.append(answer.json["price"])
    assert markup.priced >= 3 and len(set(prices)) == 1
    markup_before = markup.priced
    assert buy(client, funded.tenant, "081234567899").status_code == 202
    assert markup.priced == markup_before + 1


class Free:
    @hookimpl(tryfirst=True)
    def price_product(self, tenant_id, product_code, cost, product):
        return 0


def test_a_product_a_plugin_prices_at_zero_is_refused_with_nothing_written(app, client, funded):
    host = app.extensions["rop"].extras["plugins"]
    free = Free()
    host.pm.register(free)
    try:
        refused = buy(client, funded.tenant, "081234567890")
    finally:
        host.pm.unregister(free)
    assert refused.status_code == 422 and refused.json["errors"] == {"amount": ["must be a positive integer"]}, \
        refused.json
    assert _rows(app, funded.tenant.id) == (0, 0, 1)  # the seed top-up's journal only
