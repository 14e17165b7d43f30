"""The admin UI in a real headless Chromium (Selenium + Debian's chromium/chromedriver).

A live server (werkzeug's make_server, threaded) runs the app inside the test. Skipped
with a clear reason where no Chromium or chromedriver exists. Screenshots go to
test-artifacts/.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from hub.app import SERVICE_PACKAGES

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="browser tests need Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture
def live_server(app):
    """The app served on 127.0.0.1 at a free port by werkzeug in a thread."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser():
    """A headless Chromium with a fresh profile."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the selenium package is not installed")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rop-admin-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors (CSP violations too)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(10)  # find_element waits for the next page's elements
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _login(browser, base: str, email: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/admin/")
    assert "/admin/login" in browser.current_url
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login").click()
    _wait(browser, lambda d: "/admin/login" not in d.current_url, "the login never left the login page")


def _wait(browser, condition, message: str, timeout: float = 15):
    """Wait for ``condition``; a page that reloads itself meanwhile (stale elements) is retried."""
    from selenium.common.exceptions import (
        NoAlertPresentException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException, NoAlertPresentException)
    return WebDriverWait(browser, timeout, ignored_exceptions=ignored).until(condition, message)


def test_log_in_in_a_browser(app, live_server, browser, artifacts_dir, admin_kit):
    from selenium.webdriver.common.by import By

    email = admin_kit.make_admin(app)
    _login(browser, live_server, email, admin_kit.PASSWORD)
    assert browser.current_url == f"{live_server}/admin/"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Dashboard"
    browser.save_screenshot(str(artifacts_dir / "admin-dashboard.png"))
    cookie = browser.get_cookie("session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


def test_create_a_tenant_and_a_client_and_see_the_secret_once(app, live_server, browser, artifacts_dir,
                                                              admin_kit):
    from selenium.webdriver.common.by import By

    _login(browser, live_server, admin_kit.make_admin(app), admin_kit.PASSWORD)
    browser.get(f"{live_server}/admin/tenants/")
    browser.find_element(By.ID, "tenant-name").send_keys("Browser Mart")
    browser.find_element(By.ID, "create-tenant").click()
    assert browser.find_element(By.ID, "tenant-title").text == "Browser Mart"
    tenant_url = browser.current_url
    browser.find_element(By.ID, "client-name").send_keys("till")
    browser.find_element(By.ID, "create-client").click()
    secret = browser.find_element(By.ID, "client-secret").text
    client_id = browser.find_element(By.ID, "client-id").text
    assert len(secret) > 30
    browser.save_screenshot(str(artifacts_dir / "admin-client-secret.png"))
    browser.refresh()  # post/redirect/get: the refresh reloads the page, it does not post again
    assert browser.find_element(By.ID, "secret-already-shown") and secret not in browser.page_source
    browser.save_screenshot(str(artifacts_dir / "admin-client-secret-refreshed.png"))
    browser.find_element(By.ID, "back-to-tenant").click()
    _wait(browser, lambda d: d.current_url == tenant_url, "the back link did not lead to the tenant")
    assert client_id in browser.page_source and secret not in browser.page_source
    assert browser.page_source.count("Rotate secret") == 1  # one client: the refresh created none
    browser.get(tenant_url)
    assert secret not in browser.page_source
    browser.save_screenshot(str(artifacts_dir / "admin-tenant.png"))


def test_top_up_a_wallet_and_see_the_statement(app, live_server, browser, artifacts_dir, admin_kit,
                                               tenant_factory):
    from selenium.webdriver.common.by import By

    tenant = tenant_factory()
    _login(browser, live_server, admin_kit.make_admin(app), admin_kit.PASSWORD)
    browser.get(f"{live_server}/admin/wallets/?tenant={tenant.id}")
    # Viewing the page made no wallet: the admin opens the tenant's main wallet (a POST).
    assert not browser.find_elements(By.CLASS_NAME, "wallet-link")
    browser.find_element(By.ID, "open-main-wallet").click()  # to the new wallet's page
    browser.find_element(By.ID, "topup-amount").send_keys("250000")
    browser.find_element(By.ID, "topup-reason").send_keys("opening float")
    browser.find_element(By.ID, "topup").click()
    # a confirmation page echoes the formatted amount, the wallet and the tenant; Cancel moves nothing
    _wait(browser, lambda d: d.find_element(By.ID, "confirm-summary"), "no confirmation page")
    summary = browser.find_element(By.ID, "confirm-summary").text
    assert "IDR 250,000" in summary and tenant.slug in summary
    browser.save_screenshot(str(artifacts_dir / "admin-topup-confirm.png"))
    browser.find_element(By.ID, "cancel").click()
    _wait(browser, lambda d: d.find_element(By.ID, "available").text == "IDR 0", "cancel did not lead back")
    browser.find_element(By.ID, "topup-amount").send_keys("250000")
    browser.find_element(By.ID, "topup-reason").send_keys("opening float")
    browser.find_element(By.ID, "topup").click()
    _wait(browser, lambda d: d.find_element(By.ID, "confirm"), "no confirmation page").click()
    _wait(browser, lambda d: d.find_element(By.ID, "available").text == "IDR 250,000", "the balance did not change")
    statement = browser.find_element(By.ID, "statement").text
    assert "topup" in statement and "IDR 250,000" in statement
    browser.save_screenshot(str(artifacts_dir / "admin-wallet-statement.png"))


# -- with a real worker: a transaction reaching succeeded, a bulk job's progress bar -------------
@pytest.fixture
def worker_process(app, config):
    """``rop worker`` (every queue, 4 threads) in a subprocess on this test's database and Redis."""
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=app.extensions["rop"].redis_url,
               ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--threads", "4"], env=env)
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def slow_sandbox(app):
    """The sandbox's catalog, its purchases taking 1.5 s (the page shows the transaction in flight)."""
    from hub.products.testing import seed_sandbox_catalog

    seed_sandbox_catalog(app, settings={"latency_ms": 1500})


def _funded_tenant(app, tenant_factory):
    from hub.context import CallContext
    from hub.db import unit_of_work
    from hub.wallets import accounts as wallets

    tenant = tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=tenant.id)
        wallets.topup(ctx, uow, wallets.get_main_wallet(ctx, uow).id, 10_000_000, "seed")
        uow.commit()
    return tenant


def test_watch_a_sandbox_transaction_reach_succeeded(app, client, live_server, browser, artifacts_dir, admin_kit,
                                                     tenant_factory, slow_sandbox, worker_process):
    from selenium.webdriver.common.by import By

    tenant = _funded_tenant(app, tenant_factory)
    response = client.post("/v1/transactions", headers=tenant.headers, json={
        "ref_id": "browser-1", "product_code": "TEL10", "customer_no": "081200001234"})
    assert response.status_code == 202, response.get_json()
    trx_id = response.get_json()["id"]
    _login(browser, live_server, admin_kit.make_admin(app, "op@example.com", role="operator"), admin_kit.PASSWORD)
    browser.get(f"{live_server}/admin/transactions/?tenant={tenant.id}")
    browser.find_element(By.CLASS_NAME, "transaction-link").click()
    _wait(browser, lambda d: d.current_url.endswith(f"/admin/transactions/{trx_id}"), "the detail did not open")
    first = browser.find_element(By.ID, "transaction-status").text
    assert first in ("pending", "processing", "succeeded")
    if first != "succeeded":
        browser.save_screenshot(str(artifacts_dir / "admin-transaction-in-flight.png"))
    # the page polls its status and reloads itself: no clicks from here
    _wait(browser, lambda d: d.find_element(By.ID, "transaction-status").text == "succeeded",
          f"the transaction did not reach succeeded (worker alive: {worker_process.poll() is None})", timeout=60)
    assert browser.find_element(By.ID, "serial-number").text
    timeline = browser.find_element(By.ID, "timeline").text
    assert "processing" in timeline and "succeeded" in timeline
    browser.save_screenshot(str(artifacts_dir / "admin-transaction-succeeded.png"))
    # a refund asks first (a confirmation page): cancelled, nothing happens; confirmed, the money goes back
    browser.find_element(By.ID, "refund-reason").send_keys("customer complaint 7")
    browser.find_element(By.ID, "refund").click()
    _wait(browser, lambda d: d.find_element(By.ID, "cancel"), "the refund did not ask for a confirmation").click()
    _wait(browser, lambda d: d.find_element(By.ID, "transaction-status").text == "succeeded", "cancel did not lead back")
    browser.find_element(By.ID, "refund-reason").send_keys("customer complaint 7")
    browser.find_element(By.ID, "refund").click()
    _wait(browser, lambda d: d.find_element(By.ID, "confirm"), "the refund did not ask for a confirmation").click()
    _wait(browser, lambda d: d.find_element(By.ID, "transaction-status").text == "refunded", "no refund")
    browser.save_screenshot(str(artifacts_dir / "admin-transaction-refunded.png"))
    app.config["ROP_ADMIN_STATS_TTL"] = 0  # the login's dashboard view cached the figures of before
    browser.get(f"{live_server}/admin/")
    assert browser.find_element(By.ID, "total-refunded").text == "1"
    browser.save_screenshot(str(artifacts_dir / "admin-dashboard-charts.png"))


@pytest.mark.skipif("hub.bulk" not in SERVICE_PACKAGES, reason="the bulk service is not in this tree yet")
def test_a_bulk_jobs_progress_bar_reaches_100(app, client, live_server, browser, artifacts_dir, admin_kit,
                                              tenant_factory, slow_sandbox, worker_process):
    from selenium.webdriver.common.by import By

    tenant = _funded_tenant(app, tenant_factory)
    rows = "".join(f"bulk-{n},TEL10,08120000{1000 + n}\n" for n in range(12))
    response = client.post("/v1/bulk", data=("ref_id,product_code,customer_no\n" + rows).encode(),
                           headers=tenant.headers, content_type="text/csv")
    assert response.status_code in (200, 201, 202), response.get_json()
    job_id = response.get_json()["id"]
    _login(browser, live_server, admin_kit.make_admin(app, "op@example.com", role="operator"), admin_kit.PASSWORD)
    browser.get(f"{live_server}/admin/bulk/?tenant={tenant.id}")
    browser.find_element(By.CLASS_NAME, "bulk-link").click()
    bar = browser.find_element(By.ID, "bulk-progress")
    if bar.get_attribute("aria-valuenow") != "100":
        browser.save_screenshot(str(artifacts_dir / "admin-bulk-in-progress.png"))
    # the bar polls the progress endpoint by itself
    _wait(browser, lambda d: d.find_element(By.ID, "bulk-progress").get_attribute("data-done") == "1",
          f"the bulk job did not finish (worker alive: {worker_process.poll() is None})", timeout=90)
    bar = browser.find_element(By.ID, "bulk-progress")
    assert bar.get_attribute("aria-valuenow") == "100" and bar.text == "100%"
    assert browser.find_element(By.ID, "job-status").text == "completed"
    assert browser.find_element(By.ID, "count-succeeded").text == "12"
    assert browser.find_element(By.ID, "count-pending").text == "0"
    browser.save_screenshot(str(artifacts_dir / "admin-bulk-complete.png"))
    assert job_id in browser.current_url


def test_every_menu_page_renders_without_a_console_error(app, live_server, browser, artifacts_dir, admin_kit,
                                                        tenant_factory):
    """Each page of the menu loads with its scripts and styles and no error in the console
    (a Content-Security-Policy violation, a missing asset, a script error)."""
    from selenium.webdriver.common.by import By

    tenant_factory()
    _login(browser, live_server, admin_kit.make_admin(app), admin_kit.PASSWORD)
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#admin-navbar-collapse a")
             if (a.get_attribute("href") or "").startswith(f"{live_server}/admin/")]
    assert len(links) >= 10, links
    browser.get_log("browser")  # what the login produced
    for url in links:
        browser.get(url)
        assert browser.find_element(By.TAG_NAME, "h1").text
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], (url, errors)
        name = url.split("/admin/", 1)[1].strip("/").replace("/", "-") or "dashboard"
        browser.save_screenshot(str(artifacts_dir / f"admin-page-{name}.png"))
    browser.get(f"{live_server}/admin/assets/no-such-file.js")  # the console check does see errors
    assert any(e["level"] == "SEVERE" for e in browser.get_log("browser"))
