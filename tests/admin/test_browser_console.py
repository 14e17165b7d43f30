"""The operations console in a real headless Chromium: the transaction list's search, sorting
and paging with totals (the rest of the console's browser tests follow the same pattern).
Skipped like tests/admin/test_browser.py where no Chromium or chromedriver exists."""
from __future__ import annotations

from tests.admin import test_browser as base
from tests.admin.conftest import seed_transactions
from tests.admin.test_browser import _login, _wait

pytestmark = base.pytestmark
browser, live_server = base.browser, base.live_server  # the fixtures of tests/admin/test_browser.py


def test_search_sort_and_page_the_transaction_list(app, live_server, browser, artifacts_dir, admin_kit,
                                                  tenant_factory):
    from selenium.webdriver.common.by import By

    tenant = tenant_factory(name="Browser Store")
    ids = seed_transactions(app, tenant.id, 120, status=lambda n: "failed" if n % 3 == 0 else "succeeded")
    _login(browser, live_server, admin_kit.make_admin(app), admin_kit.PASSWORD)
    browser.get(f"{live_server}/admin/transactions/")
    assert browser.find_element(By.ID, "page-info").text == "page 1 of 3, 120 transactions"
    first = browser.find_elements(By.CLASS_NAME, "transaction-link")[0].text
    assert first == ids[-1]  # newest first
    browser.find_element(By.ID, "next-page").click()
    _wait(browser, lambda d: d.find_element(By.ID, "page-info").text == "page 2 of 3, 120 transactions",
          "the next page did not come")
    assert browser.find_elements(By.CLASS_NAME, "transaction-link")[0].text == ids[-51]
    browser.find_element(By.ID, "prev-page").click()
    _wait(browser, lambda d: d.find_element(By.ID, "page-info").text.startswith("page 1 of 3"), "no previous page")

    # sort by price: descending first, then ascending
    browser.find_element(By.CSS_SELECTOR, 'th[data-sort="price"] a').click()
    _wait(browser, lambda d: "sort=-price" in d.current_url, "the price header did not sort")
    assert browser.find_elements(By.CLASS_NAME, "transaction-link")[0].text == ids[-1]
    browser.find_element(By.CSS_SELECTOR, 'th[data-sort="price"] a').click()
    _wait(browser, lambda d: "sort=price" in d.current_url and "sort=-price" not in d.current_url,
          "the price header did not turn ascending")
    assert browser.find_elements(By.CLASS_NAME, "transaction-link")[0].text == ids[0]

    # a search by ref id prefix, combined with a status filter; the sort is kept
    box = browser.find_element(By.ID, "search")
    box.clear()
    box.send_keys("ref-00001")
    browser.find_element(By.ID, "filter-status").send_keys("failed")
    browser.find_element(By.ID, "apply-filters").click()
    _wait(browser, lambda d: "q=ref-00001" in d.current_url, "the search did not run")
    shown = [e.text for e in browser.find_elements(By.CLASS_NAME, "transaction-link")]
    assert shown == [ids[n] for n in range(10, 20) if n % 3 == 0]  # ascending by price
    assert browser.find_element(By.ID, "page-info").text == f"page 1 of 1, {len(shown)} transactions"
    browser.save_screenshot(str(artifacts_dir / "admin-transactions-search.png"))


def test_the_tenant_page_leads_to_its_lists_and_the_statement_pages_newest_first(app, live_server, browser,
                                                                                 artifacts_dir, admin_kit,
                                                                                 tenant_factory):
    from selenium.webdriver.common.by import By

    from tests.admin.test_statement import seed_topups

    tenant = tenant_factory(name="Linked Store")
    seed_transactions(app, tenant.id, 3)
    seed_topups(app, tenant.id, 55)
    _login(browser, live_server, admin_kit.make_admin(app), admin_kit.PASSWORD)
    browser.get(f"{live_server}/admin/tenants/{tenant.id}")
    for link, heading in (("link-transactions", "Transactions"), ("link-audit", "Audit log"),
                          ("link-pricing", "Pricing"), ("link-deliveries", "Webhook deliveries"),
                          ("link-bulk", "Bulk jobs")):
        browser.find_element(By.ID, link).click()
        _wait(browser, lambda d, h=heading: d.find_element(By.TAG_NAME, "h1").text == h, f"{link} did not lead there")
        assert f"tenant={tenant.id}" in browser.current_url
        if link == "link-transactions":
            assert browser.find_element(By.ID, "page-info").text == "page 1 of 1, 3 transactions"
        browser.back()
        _wait(browser, lambda d: d.find_element(By.ID, "tenant-title").text == "Linked Store", "no way back")
    browser.save_screenshot(str(artifacts_dir / "admin-tenant-links.png"))
    browser.find_element(By.ID, "link-wallets").click()
    browser.find_element(By.CLASS_NAME, "wallet-link").click()
    _wait(browser, lambda d: d.find_element(By.ID, "page-info").text == "page 1 of 2, 55 entries", "no statement")
    reasons = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#statement td.reason")]
    assert reasons[:2] == ["bank transfer 55", "bank transfer 54"] and len(reasons) == 50
    browser.find_element(By.ID, "next-page").click()
    _wait(browser, lambda d: d.find_element(By.ID, "page-info").text == "page 2 of 2, 55 entries", "no page 2")
    reasons = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#statement td.reason")]
    assert reasons == [f"bank transfer {n}" for n in range(5, 0, -1)]
    browser.save_screenshot(str(artifacts_dir / "admin-statement-page-2.png"))


def test_the_dashboard_shows_a_real_backlog(app, live_server, browser, artifacts_dir, admin_kit, tenant_factory):
    from selenium.webdriver.common.by import By

    from tests.admin.test_operations_panel import _enqueue_waiting

    tenant = tenant_factory()
    seed_transactions(app, tenant.id, 2, status="review")
    _enqueue_waiting(app, "bulk", 12, age_s=2 * 3600 + 7 * 60)
    _login(browser, live_server, admin_kit.make_admin(app), admin_kit.PASSWORD)
    row = browser.find_element(By.ID, "queue-bulk")
    assert "stalled" in row.get_attribute("class")
    assert row.find_element(By.CLASS_NAME, "waiting").text == "12"
    assert row.find_element(By.CLASS_NAME, "oldest").text == "2 h 07 min"
    assert browser.find_element(By.ID, "workers-alive").text == "0"
    browser.save_screenshot(str(artifacts_dir / "admin-dashboard-backlog.png"))
    browser.find_element(By.ID, "ops-review").click()
    _wait(browser, lambda d: d.find_element(By.ID, "page-info").text == "page 1 of 1, 2 transactions",
          "the review link did not list the transactions in review")
    assert "status=review" in browser.current_url


def test_long_names_and_narrow_screens_do_not_widen_the_page(app, live_server, browser, artifacts_dir, admin_kit,
                                                            tenant_factory):
    from selenium.webdriver.common.by import By

    tenant = tenant_factory(name="W" * 200)
    seed_transactions(app, tenant.id, 3)
    _login(browser, live_server, admin_kit.make_admin(app), admin_kit.PASSWORD)
    for width in (1280, 420):
        browser.set_window_size(width, 900)
        for path in ("/admin/tenants/", "/admin/transactions/", f"/admin/tenants/{tenant.id}"):
            browser.get(f"{live_server}{path}")
            browser.find_element(By.TAG_NAME, "h1")
            page_width, inner = browser.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            assert page_width <= inner, f"{path} is {page_width} px wide in a {inner} px window"
    browser.save_screenshot(str(artifacts_dir / "admin-narrow-tenant.png"))


def test_two_transactions_in_review_resolved_through_the_confirmation_page(app, live_server, browser, artifacts_dir,
                                                                         admin_kit, client, funded, settings):
    from selenium.webdriver.common.by import By

    from tests.admin.test_selection import _in_review
    from tests.transactions.conftest import transaction

    review = _in_review(app, client, funded, 3)
    prices = [transaction(app, funded.tenant.id, i)["price"] for i in review[:2]]
    _login(browser, live_server, admin_kit.make_admin(app, "op@example.com", role="operator"), admin_kit.PASSWORD)
    browser.get(f"{live_server}/admin/transactions/?status=review")
    boxes = browser.find_elements(By.CSS_SELECTOR, 'input[name="ids"][form="transactions-selected"]')
    assert len(boxes) == 3
    browser.find_element(By.CLASS_NAME, "select-all").click()  # select all on this page, and clear again
    assert all(b.is_selected() for b in boxes)
    browser.find_element(By.CLASS_NAME, "select-all").click()
    assert not any(b.is_selected() for b in boxes)
    for trx_id in review[:2]:
        browser.find_element(By.CSS_SELECTOR, f'input[name="ids"][value="{trx_id}"]').click()
    browser.find_element(By.ID, "selected-reason").send_keys("provider portal: failed")
    browser.find_element(By.ID, "resolve-selected-failed").click()
    _wait(browser, lambda d: d.find_element(By.ID, "confirm-title"), "no confirmation page")
    summary = browser.find_element(By.ID, "confirm-summary").text
    assert browser.find_element(By.ID, "confirm-title").text == "Resolve as failed: 2 transaction(s)?"
    assert f"IDR {sum(prices):,}" in summary and review[0] in summary and review[2] not in summary
    browser.save_screenshot(str(artifacts_dir / "admin-transactions-bulk-confirm.png"))
    browser.find_element(By.ID, "confirm").click()
    _wait(browser, lambda d: "2 transaction(s) resolved as failed" in d.page_source, "nothing was resolved")
    assert "status=review" in browser.current_url  # back to the list as it was filtered
    assert [transaction(app, funded.tenant.id, i)["status"] for i in review] == ["failed", "failed", "review"]
    browser.save_screenshot(str(artifacts_dir / "admin-transactions-bulk-done.png"))
