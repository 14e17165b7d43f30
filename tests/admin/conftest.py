"""Fixtures of the admin tests: admin users, logins and CSRF tokens (``admin_kit``)."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from hub.context import CallContext
from hub.db import unit_of_work

# The transactions service's fixtures (a sandbox catalog, a funded tenant, fast status checks)
# for the transactions, bulk and dashboard pages.
from tests.transactions.conftest import fast, funded, sandbox  # noqa: F401

PASSWORD = "correct horse battery staple"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_admin(app, email: str = "root@example.com", role: str = "admin") -> str:
    """Create an admin user through the tenancy use-case; return the e-mail."""
    from hub.tenancy.service import create_admin_user

    with unit_of_work(app.extensions["rop"].db) as uow:
        create_admin_user(CallContext.system(actor="cli:tests"), uow, email, PASSWORD, role)
        uow.commit()
    return email


def csrf_from(client, path: str = "/admin/login") -> str:
    """The CSRF token of the form on ``path``."""
    match = _TOKEN.search(client.get(path).get_data(as_text=True))
    assert match, f"no csrf token on {path}"
    return match.group(1)


def login(client, email: str, password: str = PASSWORD):
    return client.post("/admin/login", data={"email": email, "password": password,
                                             "csrf_token": csrf_from(client)})


@pytest.fixture
def settings(app):
    """Status checks due at once; a pending purchase goes to review at once (no callbacks here)."""
    from hub.transactions.lifecycle import Settings

    opts = Settings(check_schedule=(0.0,), review_after=0.0, redrive_after=0.0, sent_timeout=0.0)
    app.extensions["rop"].extras["transactions.settings"] = opts
    return opts


@pytest.fixture
def admin_kit():
    """``make_admin(app, email, role)``, ``login(client, email, password)``, ``csrf_from(client, path)``."""
    return SimpleNamespace(make_admin=make_admin, login=login, csrf_from=csrf_from, PASSWORD=PASSWORD)


def seed_transactions(app, tenant_id: str, count: int, *, start=None, **fields):
    """``count`` transaction rows of a tenant, one minute apart (newest last), inserted directly
    (list, search and paging need many rows; none of them reaches a provider). ``fields``
    override the columns; callables get the row number. Returns the ids, oldest first."""
    import datetime as dt

    from sqlalchemy import insert

    from hub.transactions.models import Transaction

    start = start or dt.datetime(2026, 3, 1, 1, 0, 0, 123456, tzinfo=dt.UTC)
    rows = []
    for n in range(count):
        row = {"id": f"trx_{tenant_id[-8:]}{n:08d}", "tenant_id": tenant_id, "ref_id": f"ref-{n:06d}",
               "fingerprint": "0" * 64, "product_code": "TEL10", "customer_no": f"0812{n:08d}",
               "wallet_id": "wal_seed", "price": 10_200 + n, "currency": "IDR", "status": "succeeded",
               "provider_code": "sandbox", "provider_ref": f"P{n:07d}", "offers": [],
               "created_at": start + dt.timedelta(minutes=n), "updated_at": start + dt.timedelta(minutes=n)}
        row.update({k: (v(n) if callable(v) else v) for k, v in fields.items()})
        rows.append(row)
    with unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.execute(insert(Transaction), rows)
        uow.commit()
    return [r["id"] for r in rows]
