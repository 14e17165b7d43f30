"""The admin's transaction list: search, sortable columns, combined filters, previous/next
with totals, all tenants or one."""
from __future__ import annotations

import html
import re

import pytest

from tests.admin.conftest import seed_transactions


def _ids(page: str) -> list[str]:
    return re.findall(r'href="/admin/transactions/(trx_[0-9a-z_]+)"', page)


def _get(client, query: str = "") -> str:
    response = client.get(f"/admin/transactions/{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


@pytest.fixture
def listed(app, client, admin_kit, tenant_factory):
    one, two = tenant_factory(name="Alpha Store"), tenant_factory(name="Beta Store")
    ids = seed_transactions(app, one.id, 120, status=lambda n: "failed" if n % 4 == 0 else "succeeded",
                            provider_ref=lambda n: f"SNB-{n:05d}")
    other = seed_transactions(app, two.id, 5, ref_id=lambda n: f"beta-{n}")
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    return one, two, ids, other


def test_paging_shows_the_page_the_pages_and_the_total(client, listed):
    _, _, ids, _ = listed
    first = _get(client)
    assert "page 1 of 3, 125 transactions" in first
    assert _ids(first)[0] == ids[-1]  # newest first
    assert 'id="prev-page"' not in first
    nxt = html.unescape(re.search(r'id="next-page" class="[^"]*" href="([^"]+)"', first).group(1))
    second = _get(client, nxt[len("/admin/transactions/"):])
    assert "page 2 of 3, 125 transactions" in second and 'id="prev-page"' in second
    assert not set(_ids(first)) & set(_ids(second))
    last = _get(client, "?page=3")
    assert "page 3 of 3" in last and 'id="next-page"' not in last and len(_ids(last)) == 25
    assert "page must be a whole number" in _get_error(client, "?page=0")


def _get_error(client, query: str) -> str:
    response = client.get(f"/admin/transactions/{query}")
    assert response.status_code == 422
    return response.get_data(as_text=True)


def test_search_by_id_ref_prefix_customer_and_provider_ref(client, listed):
    _, _, ids, other = listed
    assert _ids(_get(client, f"?q={ids[7]}")) == [ids[7]]
    assert set(_ids(_get(client, "?q=beta-"))) == set(other)
    assert _ids(_get(client, "?q=ref-000011")) == [ids[11]]
    assert set(_ids(_get(client, "?q=ref-00011"))) == set(ids[110:120])  # a prefix
    assert _ids(_get(client, "?q=081200000042")) == [ids[42]]
    assert _ids(_get(client, "?q=SNB-00099")) == [ids[99]]
    page = _get(client, "?q=ref-00011")
    assert "10 transactions" in page
    # LIKE's wildcards are literal
    assert _ids(_get(client, "?q=ref-0000_1")) == []
    assert "No transactions match" in _get(client, "?q=nothing-like-it")


def test_filters_combine_with_the_search_and_all_tenants(client, listed):
    one, two, ids, other = listed
    failed = _ids(_get(client, f"?tenant={one.id}&status=failed&q=ref-0000"))
    assert set(failed) == {ids[n] for n in range(0, 100, 4)}
    assert "25 transactions" in _get(client, f"?tenant={one.id}&status=failed&q=ref-0000")
    assert set(_ids(_get(client, f"?tenant={two.id}"))) == set(other)
    page = _get(client)
    assert '<option value="">all tenants</option>' in page
    assert "Alpha Store" in page and "Beta Store" in page


def test_columns_sort_both_ways_and_keep_the_filters(client, listed):
    one, _, ids, _ = listed
    page = _get(client, f"?tenant={one.id}&sort=price")
    assert _ids(page)[:3] == ids[:3]  # cheapest first
    assert _ids(_get(client, f"?tenant={one.id}&sort=-price"))[:3] == ids[::-1][:3]
    # the header of the current sort links to the other direction, with the filters kept
    link = html.unescape(re.search(r'<th class="sortable" data-sort="price"[^>]*><a class="sort-link" href="([^"]+)"',
                                   page).group(1))
    assert f"tenant={one.id}" in link and "sort=-price" in link
    assert _ids(_get(client, f"?tenant={one.id}&sort=ref"))[0] == ids[0]
    statuses = re.findall(r"status-(\w+)\">", _get(client, f"?tenant={one.id}&sort=status"))
    assert statuses == sorted(statuses)
    assert "sort must be one of" in _get_error(client, "?sort=secret")


def test_an_estimated_total_is_labelled(app):
    from rop_admin.lists import pager

    with app.test_request_context("/admin/transactions/?page=2"):
        text = pager({"page": 2, "pages": 2001, "total": 100_030, "estimated": True}, "transactions")["text"]
    assert text == "page 2 of about 2,001, about 100,030 transactions (estimate)"
