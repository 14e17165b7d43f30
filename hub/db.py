"""Database plumbing: the declarative base, the engine, sessions and the unit of work.

One session per HTTP request (opened lazily, closed at teardown) and one per unit of
work in workers and the CLI: both are :class:`UnitOfWork`, so a use-case does not know
who called it. Services own their tables; they all share this ``Base`` so that one
Alembic history covers the schema.

On SQLite (the embedded default) the file runs in WAL mode with a busy timeout, foreign
keys on, and every writing transaction starts with ``BEGIN IMMEDIATE``: the write lock is
taken up front, so two read-then-write transactions never deadlock on lock upgrade and
a row "locked for update" is really serialized.

On PostgreSQL a pooled connection is pinged at checkout when it sat in the pool for more
than :data:`PING_AFTER_IDLE` seconds (a dead one is replaced, as with ``pool_pre_ping``),
not at every checkout: a connection handed back a moment ago is alive, and a ping is a
round trip on every unit of work.

The shortcuts past SQLAlchemy's and psycopg's public interfaces (:class:`DriverStatement`,
psycopg's statement cache) live in :mod:`hub.driver`, behind ``ROP_DRIVER_SHORTCUTS``; the
engine records the switch (``make_engine(driver_shortcuts=...)``).
"""
from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import DateTime, MetaData, String, Text, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.functions import FunctionElement

from hub.driver import DriverStatement, cache_batch_statements  # noqa: F401 - re-exported
from hub.driver import configure as configure_driver

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use hub.db.utcnow()")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


def new_id(prefix: str) -> str:
    """A public identifier such as ``txn_4f1c…``: a prefix naming the kind, then 24 hex digits
    (96 random bits; ``os.urandom`` directly: a quarter of ``uuid4``'s cost, several per purchase)."""
    return f"{prefix}_{os.urandom(12).hex()}"


def partial(where: str) -> dict[str, Any]:
    """An ``Index``'s keyword arguments making it partial on both databases:
    ``Index(name, *columns, **partial("x IS NOT NULL"))``. A row that does not match ``where``
    costs the index nothing when it is written (hub.migrate.drift compares the predicates)."""
    return {"postgresql_where": text(where), "sqlite_where": text(where)}


class Base(DeclarativeBase):
    """The declarative base of every table of the hub."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), str: String(255)}


class _ExactInt(TypeDecorator):
    """An integer result of any size: a NUMERIC (PostgreSQL) or the text of the SQLite
    aggregate below, returned as a Python ``int``."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect) -> int | None:
        return None if value is None else int(value)


_SQLITE_EXACT_SUM = "rop_exact_sum"


class _ExactSum:
    """SQLite's ``rop_exact_sum(x)``: the sum of integers in Python's unbounded ints, as text
    (SQLite's own ``SUM`` raises "integer overflow" past 2**63 and ``total()`` is a float)."""

    def __init__(self) -> None:
        self.total: int | None = None

    def step(self, value: Any) -> None:
        if value is not None:
            self.total = (self.total or 0) + int(value)

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


class exact_sum(FunctionElement):
    """``SUM(column)`` that never overflows, whatever the figures: computed in NUMERIC on
    PostgreSQL and with unbounded integers on SQLite; the result is a Python ``int`` (None
    over no rows). Every sum of amounts or balances uses it."""

    type = _ExactInt()
    inherit_cache = True
    name = "exact_sum"


@compiles(exact_sum)
def _exact_sum_default(element, compiler, **kw):
    return f"CAST(SUM({compiler.process(element.clauses, **kw)}) AS NUMERIC)"


@compiles(exact_sum, "sqlite")
def _exact_sum_sqlite(element, compiler, **kw):
    return f"{_SQLITE_EXACT_SUM}({compiler.process(element.clauses, **kw)})"


def make_engine(url: str, *, driver_shortcuts: bool = True, **kwargs: Any) -> Engine:
    """Create the engine for ``url`` with the hub's settings for that backend.

    :param driver_shortcuts: ``ROP_DRIVER_SHORTCUTS`` (hub.driver): :class:`DriverStatement`
        through the DBAPI cursor and psycopg's larger statement cache; off, neither."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # Take transaction control away from pysqlite so that BEGIN is ours.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
            dbapi_conn.create_aggregate(_SQLITE_EXACT_SUM, 1, _ExactSum)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

        configure_driver(engine, driver_shortcuts)
        return engine
    ping_idle = "pool_pre_ping" not in kwargs  # an explicit pool_pre_ping keeps SQLAlchemy's own
    if url.startswith("postgresql") and "connect_timeout" not in make_url(url).query:
        # An unreachable server is a 503 within seconds, not a request hung on TCP's own timeout.
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT, **kwargs.get("connect_args", {})}
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    configure_driver(engine, driver_shortcuts)
    if ping_idle:
        _ping_after_idle(engine)
    return engine


#: Seconds to wait for a new PostgreSQL connection (unless the URL sets ``connect_timeout``).
CONNECT_TIMEOUT = 5

#: Seconds a pooled connection may sit idle and still be handed out without a ping.
PING_AFTER_IDLE = 2.0


def _ping_after_idle(engine: Engine) -> None:
    """Ping (the dialect's own ping) a connection at checkout when it was idle for more than
    :data:`PING_AFTER_IDLE` s; a failed ping raises ``DisconnectionError``, on which the pool
    discards that connection and checks out a fresh one (SQLAlchemy's pessimistic recipe)."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_conn, record):
        record.info["rop_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn, record):
        if record is not None:
            record.info["rop_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy):
        since = record.info.get("rop_idle_since")
        if since is not None and time.monotonic() - since <= PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # any failure: replace the connection
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


class Database:
    """The engine and session factories of one app (built by the app factory, never at import)."""

    def __init__(self, url: str, *, driver_shortcuts: bool = True, **engine_kwargs: Any):
        self.url = url
        self.driver_shortcuts = driver_shortcuts
        self.engine = make_engine(url, driver_shortcuts=driver_shortcuts, **engine_kwargs)
        self.is_sqlite = url.startswith("sqlite")
        self._writer = sessionmaker(bind=self.engine, expire_on_commit=False)
        reader_bind = self.engine.execution_options(sqlite_begin="DEFERRED") if self.is_sqlite else self.engine
        self._reader = sessionmaker(bind=reader_bind, expire_on_commit=False)

    def session(self, *, readonly: bool = False) -> Session:
        """A new session; ``readonly`` sessions on SQLite do not take the write lock."""
        return (self._reader if readonly else self._writer)()

    def dispose(self) -> None:
        self.engine.dispose()


class UnitOfWork:
    """One database transaction and what must happen after it commits.

    Use-cases receive a unit of work, add their changes to ``uow.session`` and never
    commit themselves; the caller (a view, a handler, a CLI command) commits once.
    Callbacks registered with :meth:`after_commit` run only when the commit succeeded
    (the outbox relay uses this: nothing is published before its transaction commits).
    Work registered with :meth:`before_commit` runs last inside the transaction.
    """

    def __init__(self, session: Session):
        self.session = session
        self._after_commit: list[Callable[[], None]] = []
        self._before_commit: list[Callable[[], None]] = []
        self._first_batches = 0  # how many of _before_commit are batches marked first
        self.committed = False
        #: what a service learnt in this transaction and may reuse in it (cleared on rollback)
        self.memo: dict[Any, Any] = {}
        #: write every message published in this unit of work at the commit, together (one
        #: insert per kind of row for all of them: hub.bus.publish's ``at_commit``); for a
        #: unit of work that moves many rows at once and opens no savepoint (a savepoint rolled
        #: back would not take its messages back)
        self.messages_at_commit = False

    def before_commit(self, work: Callable[[], None]) -> None:
        """Run ``work`` at :meth:`commit`, inside the transaction, after everything else was
        written (the session is flushed first) and right before the COMMIT.

        For writes that lock a row many transactions want (a wallet's balances): the lock is
        held from that write to the commit, so it should be the last thing a transaction
        does. ``work`` may raise: the commit does not happen, the caller rolls back.
        """
        self._before_commit.append(work)

    def before_commit_batch(self, key: Any, item: Any, work: Callable[[list[Any]], None], *,
                            first: bool = False) -> None:
        """Add ``item`` to the batch ``key``; at :meth:`commit`, ``work(items)`` runs once for
        all the items added under ``key`` (in their order), as :meth:`before_commit` work —
        for writes that are cheaper together (one wallet update for a group's holds). A
        rollback drops the batch with the rest; after a commit the next item starts a new one.
        ``work`` is the first caller's (later callers' are not kept).

        ``first``: the batch is written before every other piece of before-commit work (the
        batches marked ``first`` in the order they began): for plain inserts (outbox rows)
        that should not lengthen the time a hot row written last (a wallet) stays locked."""
        run = self._join_batch("before_commit_batch", key, item, work)
        if run is None:
            return
        if first:
            self._before_commit.insert(self._first_batches, run)
            self._first_batches += 1
        else:
            self._before_commit.append(run)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed (not on rollback)."""
        self._after_commit.append(callback)

    def after_commit_batch(self, key: Any, item: Any, work: Callable[[list[Any]], None]) -> None:
        """Add ``item`` to the after-commit batch ``key``: once the transaction has committed,
        ``work(items)`` runs once for all of them (one Redis round trip for a batch's wake-ups),
        in the place of the first item among the after-commit callbacks. ``work`` is the first
        caller's. A rollback drops the batch with the rest."""
        run = self._join_batch("after_commit_batch", key, item, work)
        if run is not None:
            self._after_commit.append(run)

    def _join_batch(self, kind: str, key: Any, item: Any,
                    work: Callable[[list[Any]], None]) -> Callable[[], None] | None:
        """Add ``item`` to the batch ``(kind, key)`` kept in :attr:`memo` (cleared by a
        rollback); :return: when ``item`` started it, the callable that runs ``work`` once for
        all its items (and ends the batch: the next item starts a new one), else None."""
        slot = (kind, key)
        batch = self.memo.get(slot)
        if batch is not None:
            batch.append(item)
            return None
        batch = self.memo[slot] = [item]
        return lambda: work(self.memo.pop(slot, batch))

    def flush(self) -> None:
        self.session.flush()

    def commit(self) -> None:
        """Run the before-commit work, commit, then run the after-commit callbacks (their
        failures are logged, not raised)."""
        if self._before_commit:
            self.session.flush()
            while self._before_commit:
                self._first_batches = max(0, self._first_batches - 1)
                self._before_commit.pop(0)()
        # Nothing went through the session (an accept made by one call on a connection of its
        # own, in autocommit): no transaction to end. Its begin and commit cost about 0.1 ms
        # of a web worker's CPU per purchase.
        if self.session.in_transaction():
            self.session.commit()
        self.committed = True
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the state is committed; a callback must not undo the answer
                import structlog

                structlog.get_logger("hub.db").exception("after_commit callback failed", callback=repr(callback))

    def flush_versioned(self, what: str) -> None:
        """Flush the updates of versioned rows (``version_id_col``): when another transaction
        updated one of them since it was read, roll back and raise ``EditConflict``."""
        from sqlalchemy.orm.exc import StaleDataError

        from hub.errors import EditConflict

        try:
            self.session.flush()
        except StaleDataError:
            self.rollback()
            raise EditConflict(f"{what} changed since you opened it (another change was saved first)") from None

    def rollback(self) -> None:
        self.session.rollback()
        self._after_commit = []
        self._before_commit = []
        self._first_batches = 0
        self.memo.clear()

    def close(self) -> None:
        self.session.close()


@contextmanager
def unit_of_work(db: Database, *, readonly: bool = False) -> Iterator[UnitOfWork]:
    """A unit of work for workers and the CLI: rolled back unless committed, always closed."""
    uow = UnitOfWork(db.session(readonly=readonly))
    try:
        yield uow
    except BaseException:
        uow.rollback()
        raise
    finally:
        if not uow.committed:
            uow.session.rollback()
        uow.close()
