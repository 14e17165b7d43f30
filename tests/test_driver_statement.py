"""hub.db.DriverStatement (hub.driver): Core statements sent through the DBAPI cursor write and
read what SQLAlchemy's own execution would, raise SQLAlchemy's exceptions, and take part in the
unit of work's transaction. The switch (``ROP_DRIVER_SHORTCUTS``): the same statements give the
same rows, row counts and exceptions with the shortcuts on (the DBAPI cursor) and off
(SQLAlchemy's ``conn.execute``); off, they really go through SQLAlchemy's execution, and
psycopg's private module is left as psycopg ships it. SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import bindparam, delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.bus.models import OutboxMessage
from hub.config import Config, ConfigError
from hub.db import Database, DriverStatement, unit_of_work, utcnow

OUTBOX = OutboxMessage.__table__
INSERT = DriverStatement(insert(OUTBOX))
BY_TYPE = DriverStatement(select(OUTBOX.c.id, OUTBOX.c.publish_count).where(OUTBOX.c.type == bindparam("type"))
                          .order_by(OUTBOX.c.id).limit(1))
BUMP = DriverStatement(update(OUTBOX).where(OUTBOX.c.id == bindparam("message_id"))
                       .values(publish_count=OUTBOX.c.publish_count + bindparam("by")))
BUMP_RETURNING = DriverStatement(update(OUTBOX).where(OUTBOX.c.id == bindparam("message_id"))
                                 .values(publish_count=OUTBOX.c.publish_count + 1)
                                 .returning(OUTBOX.c.id, OUTBOX.c.publish_count))


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


# -- the switch: ROP_DRIVER_SHORTCUTS ---------------------------------------------------------
def _scenario(db: Database, seen: list[bool]) -> tuple[list, list, list[bool]]:
    """The same statements on ``db``: (what each call answered, the table afterwards, how
    each was sent: ``seen`` as :func:`_through_sqlalchemy` fills it)."""
    answers: list = []
    seen.clear()
    with unit_of_work(db) as uow:
        conn = uow.session.connection()
        answers.append(INSERT.run(conn, _row(1)))                                   # an insert
        answers.append(INSERT.run(conn, [_row(2), _row(3), _row(4)]))               # executemany
        answers.append(BUMP.run(conn, {"message_id": "msg_2", "by": 3}))            # an update's row count
        answers.append(BUMP.run(conn, {"message_id": "msg_9", "by": 3}))            # ... of no row
        answers.append(BUMP.run(conn, [{"message_id": "msg_1", "by": 2}, {"message_id": "msg_4", "by": 5},
                                       {"message_id": "msg_9", "by": 1}]))          # executemany update
        answers.append(BUMP_RETURNING.first(conn, {"message_id": "msg_3"}))        # UPDATE … RETURNING
        answers.append(BY_TYPE.first(conn, {"type": "test.event"}))                 # a select, LIMIT bound
        answers.append(BY_TYPE.first(conn, {"type": "nothing"}))                    # a select of no row
        uow.commit()
    with pytest.raises(IntegrityError), unit_of_work(db) as uow:                    # a duplicate key
        INSERT.run(uow.session.connection(), _row(1))
    sent = list(seen)
    with unit_of_work(db, readonly=True) as uow:
        table = [r._asdict() for r in uow.session.execute(select(OUTBOX).order_by(OUTBOX.c.id))]
    return answers, table, sent


def _through_sqlalchemy(db: Database) -> list[bool]:
    """Record, for each statement the engine sends, whether SQLAlchemy's execution sent it
    (it passes an execution context to ``before_cursor_execute``; the shortcut passes None)."""
    seen: list[bool] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _seen(conn, cursor, statement, parameters, context, executemany):
        if "outbox" in statement and "BEGIN" not in statement:
            seen.append(context is not None)

    return seen


def test_the_same_statements_give_the_same_results_with_the_shortcuts_on_and_off(app, config):
    on = app.extensions["rop"].db
    assert on.driver_shortcuts is True
    off = Database(config.database_url, driver_shortcuts=False)
    try:
        seen_on, seen_off = _through_sqlalchemy(on), _through_sqlalchemy(off)
        *with_shortcuts, sent_on = _scenario(on, seen_on)
        with unit_of_work(on) as uow:
            uow.session.execute(delete(OUTBOX))
            uow.commit()
        *without, sent_off = _scenario(off, seen_off)
    finally:
        off.dispose()
    assert with_shortcuts == without
    answers, table = without
    assert answers == [1, 3, 1, 0, 2, ("msg_3", 1), ("msg_1", 2), None]
    assert [(r["id"], r["publish_count"]) for r in table] == [("msg_1", 2), ("msg_2", 3), ("msg_3", 1),
                                                             ("msg_4", 5)]
    assert table[0]["envelope"] == _row(1)["envelope"] and table[0]["created_at"] == _row(1)["created_at"]
    # on: every statement through the cursor; off: every one through SQLAlchemy's execution
    assert len(sent_on) == len(sent_off) == 9 and not any(sent_on) and all(sent_off)


def test_the_setting(tmp_path):
    def shortcuts(env: dict) -> bool:
        return Config.from_env(env, instance_path=tmp_path).driver_shortcuts

    assert shortcuts({}) is True
    assert shortcuts({"ROP_DRIVER_SHORTCUTS": "1"}) is True
    assert shortcuts({"ROP_DRIVER_SHORTCUTS": "off"}) is False
    assert shortcuts({"ROP_DRIVER_SHORTCUTS": "0"}) is False
    with pytest.raises(ConfigError, match="ROP_DRIVER_SHORTCUTS"):
        shortcuts({"ROP_DRIVER_SHORTCUTS": "maybe"})


def test_the_app_and_its_workers_database_follow_the_setting(config):
    from dataclasses import replace

    from hub.app import create_app
    from hub.worker import size_pools_for_threads

    app = create_app(replace(config, driver_shortcuts=False))
    try:
        assert app.extensions["rop"].db.driver_shortcuts is False
        size_pools_for_threads(app.extensions["rop"], 4, 2)  # a thread worker's own pool (PostgreSQL)
        db = app.extensions["rop"].db
        assert db.driver_shortcuts is False
        with db.engine.connect() as conn:
            assert conn.get_execution_options()["rop_driver_shortcuts"] is False
    finally:
        app.extensions["rop"].close()


_PROBE = textwrap.dedent("""
    import sys
    from psycopg import _queries
    before = (_queries._query2pg, _queries.MAX_CACHED_STATEMENT_LENGTH, _queries.MAX_CACHED_STATEMENT_PARAMS)
    from sqlalchemy import bindparam, select
    from hub.bus.models import OutboxMessage
    from hub.db import Database, DriverStatement, unit_of_work
    table = OutboxMessage.__table__
    db = Database(sys.argv[1], driver_shortcuts=sys.argv[2] == "1")
    with unit_of_work(db, readonly=True) as uow:
        DriverStatement(select(table.c.id).where(table.c.id == bindparam("id"))).first(
            uow.session.connection(), {"id": "msg_0"})
    db.dispose()
    after = (_queries._query2pg, _queries.MAX_CACHED_STATEMENT_LENGTH, _queries.MAX_CACHED_STATEMENT_PARAMS)
    print("untouched" if after == before else "patched")
""")


@pytest.mark.postgres("psycopg's private module: PostgreSQL only")
def test_with_the_switch_off_psycopgs_private_module_is_untouched_postgres(database_url):
    """A fresh process (this one's psycopg was patched by the suite's engines)."""
    def probe(switch: str) -> str:
        done = subprocess.run([sys.executable, "-c", _PROBE, database_url, switch], check=False,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert probe("0") == "untouched"
    assert probe("1") == "patched"  # the probe sees the patch when there is one
