"""A wallet's statement in the admin: newest first, paged, with each entry's reason and operator."""
from __future__ import annotations

import re

from hub.context import CallContext
from hub.db import unit_of_work


def seed_topups(app, tenant_id: str, count: int) -> str:
    """``count`` top-ups by an operator, each with its own reason; returns the main wallet's id."""
    from hub.wallets import accounts as wallets

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="admin:desk@example.com", tenant_id=tenant_id)
        wallet_id = wallets.get_main_wallet(ctx, uow).id
        for n in range(1, count + 1):
            wallets.topup(ctx, uow, wallet_id, 1_000 * n, f"seed-{n}", reason=f"bank transfer {n}")
        uow.commit()
    return wallet_id


def test_the_statement_is_newest_first_paged_with_reasons_and_operators(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    wallet_id = seed_topups(app, tenant.id, 60)
    admin_kit.login(client, admin_kit.make_admin(app))
    path = f"/admin/wallets/{tenant.id}/{wallet_id}"
    page = client.get(path).get_data(as_text=True)
    assert "page 1 of 2, 60 entries" in page
    reasons = re.findall(r'<td class="reason">([^<]*)</td>', page)
    assert reasons[:3] == ["bank transfer 60", "bank transfer 59", "bank transfer 58"] and len(reasons) == 50
    assert page.count('<td class="actor">admin:desk@example.com</td>') == 50
    assert "IDR 60,000" in page and "IDR 1,830,000" in page  # the last top-up and the balance after it
    second = client.get(path + "?page=2").get_data(as_text=True)
    assert "page 2 of 2, 60 entries" in second and 'id="prev-page"' in second and 'id="next-page"' not in second
    assert re.findall(r'<td class="reason">([^<]*)</td>', second) == [f"bank transfer {n}" for n in range(10, 0, -1)]
    assert client.get(path + "?page=x").status_code == 422
