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
def admin_kit():
    """``make_admin(app, email, role)``, ``login(client, email, password)``, ``csrf_from(client, path)``."""
    return SimpleNamespace(make_admin=make_admin, login=login, csrf_from=csrf_from, PASSWORD=PASSWORD)
