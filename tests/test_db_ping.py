"""The PostgreSQL pool pings a connection that sat idle, and replaces it when it is dead."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from hub import db as hub_db
from hub.db import make_engine

pytestmark = pytest.mark.postgres("SQLite connections are files: no ping")


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_killed_while_idle_is_replaced_at_checkout(engine, database_url, monkeypatch):
    pid = _backend_pid(engine)
    other = make_engine(database_url)
    with other.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.dispose()
    monkeypatch.setattr(hub_db, "PING_AFTER_IDLE", 0.0)  # it has been idle "long enough"
    assert _backend_pid(engine) != pid  # pinged, found dead, replaced: the caller saw no error


def test_a_connection_just_handed_back_is_not_pinged(engine, monkeypatch):
    pings = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or real(conn))
    monkeypatch.setattr(hub_db, "PING_AFTER_IDLE", 60.0)
    first = _backend_pid(engine)
    assert _backend_pid(engine) == first and pings == []
    monkeypatch.setattr(hub_db, "PING_AFTER_IDLE", 0.0)
    assert _backend_pid(engine) == first and pings == [1]
