"""hub.db.DriverStatement: Core statements sent through the DBAPI cursor write and read what
SQLAlchemy's own execution would, raise SQLAlchemy's exceptions, and take part in the unit
of work's transaction. SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.bus.models import OutboxMessage
from hub.db import DriverStatement, unit_of_work, utcnow

OUTBOX = OutboxMessage.__table__
INSERT = DriverStatement(insert(OUTBOX))
BY_TYPE = DriverStatement(select(OUTBOX.c.id, OUTBOX.c.publish_count).where(OUTBOX.c.type == bindparam("type"))
                          .order_by(OUTBOX.c.id).limit(1))
BUMP = DriverStatement(update(OUTBOX).where(OUTBOX.c.id == bindparam("message_id"))
                       .values(publish_count=OUTBOX.c.publish_count + bindparam("by")))


def _row(n: int, **extra):
    return {"id": f"msg_{n}", "type": "test.event", "kind": "event", "tenant_id": "ten_x",
            "envelope": {"n": n, "nested": {"none": None, "list": [1, "a"]}},
            "created_at": dt.datetime(2026, 11, 25, 12, 0, n, tzinfo=dt.UTC), "published_at": None,
            "publish_count": 0, **extra}


def test_an_insert_stores_what_core_would_read_back(app):
    db = app.extensions["rop"].db
    with unit_of_work(db) as uow:
        assert INSERT.run(uow.session.connection(), _row(1)) == 1
        uow.commit()
    with unit_of_work(db, readonly=True) as uow:
        stored = uow.session.execute(select(OUTBOX).where(OUTBOX.c.id == "msg_1")).one()._asdict()
    assert stored == _row(1)  # JSON as JSON, the datetime as an aware UTC datetime, NULL as None


def test_executemany_and_the_row_count_and_values_bound_in_the_statement(app):
    db = app.extensions["rop"].db
    with unit_of_work(db) as uow:
        conn = uow.session.connection()
        INSERT.run(conn, [_row(1), _row(2), _row(3)])
        assert BUMP.run(conn, [{"message_id": "msg_1", "by": 2}, {"message_id": "msg_3", "by": 5},
                               {"message_id": "msg_9", "by": 1}]) == 2
        assert BY_TYPE.first(conn, {"type": "test.event"}) == ("msg_1", 2)  # LIMIT 1, bound by the statement
        assert BY_TYPE.first(conn, {"type": "nothing"}) is None
        uow.commit()
    with unit_of_work(db, readonly=True) as uow:
        counts = dict(uow.session.execute(select(OUTBOX.c.id, OUTBOX.c.publish_count)).all())
    assert counts == {"msg_1": 2, "msg_2": 0, "msg_3": 5}


def test_it_is_in_the_unit_of_works_transaction(app):
    db = app.extensions["rop"].db
    with unit_of_work(db) as uow:
        INSERT.run(uow.session.connection(), _row(1))
        uow.rollback()
    with unit_of_work(db) as uow:
        INSERT.run(uow.session.connection(), _row(2, created_at=utcnow()))
        # the ORM session of the same unit of work sees the row before the commit
        assert uow.session.scalar(select(OUTBOX.c.id)) == "msg_2"
        uow.commit()
    with unit_of_work(db, readonly=True) as uow:
        assert uow.session.scalars(select(OUTBOX.c.id)).all() == ["msg_2"]


def test_driver_errors_are_sqlalchemys_exceptions(app):
    db = app.extensions["rop"].db
    with unit_of_work(db) as uow:
        INSERT.run(uow.session.connection(), _row(1))
        uow.commit()
    with pytest.raises(IntegrityError), unit_of_work(db) as uow:
        INSERT.run(uow.session.connection(), _row(1))
    with unit_of_work(db) as uow:  # the pooled connection is fine afterwards
        INSERT.run(uow.session.connection(), _row(2))
        uow.commit()


@pytest.mark.postgres("psycopg's statement cache: PostgreSQL only")
def test_a_statement_longer_than_psycopg_caches_is_converted_once_postgres(app, is_postgres):
    """hub.db.cache_batch_statements: a statement over psycopg's own limits of 4,096
    characters and 50 parameters (the shape of a batch's multi-row INSERT) is converted
    once, then found in psycopg's cache."""
    from psycopg import _queries

    from hub.db import cache_batch_statements

    assert cache_batch_statements() is True
    assert _queries.MAX_CACHED_STATEMENT_PARAMS >= 4096 and _queries.MAX_CACHED_STATEMENT_LENGTH >= 64 * 1024
    values = ", ".join(f"(%(id{n})s, 'test.event', 'event', %(n{n})s, 0)" for n in range(100))
    query = f"SELECT * FROM (VALUES {values}) AS v(id, type, kind, n, c)"  # > 4,096 characters, 200 parameters
    params = {k: v for n in range(100) for k, v in ((f"id{n}", f"msg_{n}"), (f"n{n}", str(n)))}
    assert len(query) > 4096 and len(params) > 50
    with app.extensions["rop"].db.engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.execute(query, params)
        assert len(cursor.fetchall()) == 100
        hits = _queries._query2pg.cache_info().hits
        cursor.execute(query, params)  # the second time: from the cache
        assert _queries._query2pg.cache_info().hits == hits + 1
        assert cursor.fetchall()[99][0] == "msg_99"
