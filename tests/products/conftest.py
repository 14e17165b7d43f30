from __future__ import annotations

import pytest

from hub.context import CallContext
from hub.db import unit_of_work


@pytest.fixture
def run(app):
    """``run(fn, ctx, *args)``: call a use-case in its own committed unit of work, in app context."""
    def call(fn, *args, **kwargs):
        with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
            result = fn(args[0], uow, *args[1:], **kwargs)
            uow.commit()
            return result
    return call


@pytest.fixture
def units(app):
    """The unit-of-work factory the sync takes."""
    return lambda: unit_of_work(app.extensions["rop"].db)


@pytest.fixture
def system():
    return CallContext.system(actor="tests")


def sale_ctx(tenant_id: str) -> CallContext:
    """What the transactions service passes: its own identity, acting for a tenant."""
    from hub.auth import service_context

    return service_context(CallContext(tenant_id=tenant_id, client_id="cli_x", scopes=frozenset()), "transactions")


def add_config(app, provider_code: str = "sandbox", name: str = "Sandbox", **kwargs) -> str:
    from hub.providers import service

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        row = service.add_config(uow, provider_code, name, **kwargs)
        uow.commit()
        return row.id


def open_breaker(app, config_id: str) -> None:
    """Trip the configuration's shared circuit breaker the way transport failures do."""
    from hub.providers import health

    redis = app.extensions["rop"].redis
    for _ in range(health.MIN_CALLS):
        health.record(redis, config_id, "unknown", 30_000, transport_failure=True)
    assert health.breaker_state(redis, config_id) == "open"
    seen_now(app)


def seen_now(app) -> None:
    """Every process sees a breaker's change within hub.cache.REFRESH (50 ms: the reading
    of the versions and breakers it keeps); this one is made to read them again now."""
    from hub.cache import refcache

    refcache(app).refresh()
