from __future__ import annotations

import pytest

from hub.context import CallContext
from hub.db import unit_of_work

# The admin's logins (four-eyes and the dashboard's sums are tried in the admin too).
from tests.admin.conftest import admin_kit  # noqa: F401

ALL = frozenset({"wallets:read", "wallets:write", "wallets:topup"})


@pytest.fixture
def ctx():
    return CallContext(tenant_id="ten_wallets_a", client_id="cli_a", scopes=ALL)


@pytest.fixture
def other_ctx():
    return CallContext(tenant_id="ten_wallets_b", client_id="cli_b", scopes=ALL)


@pytest.fixture
def run(app):
    """``run(fn, *args)``: call a use-case in its own committed unit of work, inside the app context."""
    def call(fn, *args, **kwargs):
        with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
            result = fn(args[0], uow, *args[1:], **kwargs)
            uow.commit()
            return result
    return call


@pytest.fixture
def verify(app):
    def check():
        from hub.wallets.checks import verify_ledger

        with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
            return verify_ledger(uow)
    return check
