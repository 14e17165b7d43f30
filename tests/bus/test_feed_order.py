"""The events feed is a log a partner follows with ``?after=<next_cursor>``: an event must
never be skipped, even when the transaction that wrote it commits after one that wrote a
later event (a batch's long unit of work beside a quick accept)."""
from __future__ import annotations

import pytest

from hub.bus import publish
from hub.bus.testing import Ping, register
from hub.db import unit_of_work

SCOPES = ["events:read"]


@pytest.fixture
def bus_app(app):
    register(app)
    return app


def _follow(client, tenant, after) -> tuple[list[str], str | None]:
    page = client.get("/v1/events" + (f"?after={after}" if after is not None else ""), headers=tenant.headers)
    assert page.status_code == 200, page.get_json()
    body = page.get_json()
    return [e["id"] for e in body["items"]], body["next_cursor"]


@pytest.mark.postgres(reason="SQLite has one writer at a time: events commit in their order")
def test_an_event_committed_after_a_later_one_is_not_skipped_by_a_follower(bus_app, client, tenant_factory):
    tenant = tenant_factory(scopes=SCOPES)
    db = bus_app.extensions["rop"].db
    seen: list[str] = []
    ids, cursor = _follow(client, tenant, None)
    seen += ids
    with bus_app.app_context(), unit_of_work(db) as slow:  # a long unit of work: its event first
        first = publish(tenant.ctx, slow, Ping(n=1, mode="noop"))
        slow.flush()
        with unit_of_work(db) as quick:  # a quick one, started later, commits first
            second = publish(tenant.ctx, quick, Ping(n=2, mode="noop"))
            quick.commit()
        ids, cursor = _follow(client, tenant, cursor)  # a follower reads in between
        seen += ids
        slow.commit()
    for _ in range(3):
        ids, cursor = _follow(client, tenant, cursor)
        seen += ids
    assert sorted(seen) == sorted([first.id, second.id]), "the follower skipped an event"
    assert len(seen) == len(set(seen)), "the follower saw an event twice"
