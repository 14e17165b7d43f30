"""The hub's two shortcuts past its database libraries' public interfaces, behind one switch
(and :func:`call_in_autocommit`, one statement through the driver by public interfaces).

1. :func:`cache_batch_statements` replaces psycopg's cache of converted queries (the private
   module ``psycopg._queries``) with a larger one, so that the hub's long batch statements are
   converted once.
2. :class:`DriverStatement` compiles a Core statement once and sends it through the DBAPI
   cursor of a SQLAlchemy connection, its parameters converted with the compiled statement's
   bind processors (SQLAlchemy's private ``compiled._bind_processors``).

Both lean on internals that a psycopg or SQLAlchemy release may change. The setting
``ROP_DRIVER_SHORTCUTS`` (``Config.driver_shortcuts``, default on; docs/api.md, "Environment")
turns them off: the engine of a :class:`hub.db.Database` built with ``driver_shortcuts=False``
carries the execution option :data:`SHORTCUTS_OPTION` = False, every :class:`DriverStatement`
run on its connections goes through SQLAlchemy's own ``conn.execute(statement, params)``, and
psycopg's module is left as psycopg ships it. The results are the same either way
(tests/test_driver_statement.py); with the switch on, each statement costs less CPU.

``hub.db`` re-exports :class:`DriverStatement` and :func:`cache_batch_statements`.
"""
from __future__ import annotations

from typing import Any

#: the execution option (on the engine) that says whether the shortcuts are on (absent: on)
SHORTCUTS_OPTION = "rop_driver_shortcuts"

#: psycopg's cache of converted statements: how many, and the longest statement it keeps
PSYCOPG_CACHED_STATEMENTS = 1024
PSYCOPG_CACHED_LENGTH = 64 * 1024
PSYCOPG_CACHED_PARAMS = 4096


def configure(engine: Any, shortcuts: bool) -> None:
    """Record the switch on ``engine`` (before any option engine is derived from it) and, on
    with psycopg, install the larger statement cache. Off installs nothing; an already
    installed cache (another engine of this process had the switch on) stays."""
    engine.update_execution_options(**{SHORTCUTS_OPTION: bool(shortcuts)})
    if shortcuts and engine.dialect.driver == "psycopg":
        cache_batch_statements()


def cache_batch_statements() -> bool:
    """Let psycopg keep the batch statements of the hub in its cache of converted queries.

    psycopg converts every query's ``%(name)s`` placeholders to ``$n`` with a regular
    expression, and caches the result only for statements of at most 4,096 characters and
    50 parameters (``psycopg._queries``): an ORM's multi-row ``INSERT … VALUES (…), (…)
    RETURNING`` (SQLAlchemy's insertmanyvalues: a batch's attempts, timeline lines, ledger
    entries) is longer, and was converted anew each time — measured at 9 % of a provider
    worker's CPU. The hub's batches come in a few sizes (at most 50 rows), so those statements
    repeat; the cache is made larger so that they stay in it. psycopg's own limits are module
    constants of a private module: when a psycopg release renames them, nothing changes
    (returns False) and the hub runs as before, only slower.
    """
    try:
        from functools import lru_cache

        from psycopg import _queries
    except ImportError:  # pragma: no cover - no psycopg
        return False
    convert = getattr(_queries, "_query2pg_nocache", None)
    if convert is None or not hasattr(_queries, "MAX_CACHED_STATEMENT_PARAMS") \
            or not hasattr(_queries, "MAX_CACHED_STATEMENT_LENGTH") or not hasattr(_queries, "_query2pg"):
        return False
    if getattr(_queries._query2pg, "rop_cache", False):
        return True
    cached = lru_cache(maxsize=PSYCOPG_CACHED_STATEMENTS)(convert)
    cached.rop_cache = True  # type: ignore[attr-defined]
    _queries._query2pg = cached
    _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, PSYCOPG_CACHED_LENGTH)
    _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, PSYCOPG_CACHED_PARAMS)
    return True


_PRESERVE_ROWCOUNT = {"preserve_rowcount": True}


class DriverStatement:
    """A Core statement sent straight through the DBAPI cursor of a SQLAlchemy connection.

    SQLAlchemy's execution layer (the compiled-cache look-up, the execution context, the
    result wrapper) costs about 45 µs of CPU per statement. The handful of statements on
    every purchase's path (a hold, its event) are compiled here once per dialect and set of
    parameter names, their parameters converted by the column types' own bind processors
    (the very conversion SQLAlchemy applies), and sent with ``cursor.execute``, in the
    connection's current transaction. Driver errors are raised as SQLAlchemy's exceptions
    (``IntegrityError`` and so on), and a lost connection is invalidated, as SQLAlchemy does.

    Listeners of the engine's ``before_cursor_execute`` event are called for these
    statements too (with no execution context; their return value is not used), so that
    whatever observes the SQL an engine sends sees all of it.

    Rows come back as the driver returns them: use it for statements whose result columns
    need no type processing (strings, integers), not for JSON or datetimes.

    With the shortcuts off (the connection's engine has :data:`SHORTCUTS_OPTION` False) the
    statement runs through ``conn.execute(statement, params)``: the same rows (as tuples),
    the same row counts, the same exceptions.
    """

    def __init__(self, statement: Any):
        self.statement = statement
        self._compiled: dict[tuple, tuple[str, dict, dict, tuple | None]] = {}

    def _compile(self, dialect, keys: tuple[str, ...]) -> tuple[str, dict, dict, tuple | None]:
        found = self._compiled.get((dialect.name, keys))
        if found is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=list(keys))
            # values bound in the statement itself (a LIMIT, a literal compared with)
            fixed = {name: value for name, value in compiled.construct_params(_check=False).items()
                     if name not in keys}
            found = (compiled.string, dict(compiled._bind_processors), fixed,
                     tuple(compiled.positiontup) if compiled.positional else None)
            self._compiled[(dialect.name, keys)] = found
        return found

    @staticmethod
    def _convert(params: dict[str, Any], processors: dict, fixed: dict, names: tuple | None) -> Any:
        if fixed:
            params = {**fixed, **params}
        if processors:
            params = {k: (processors[k](v) if k in processors else v) for k, v in params.items()}
        return params if names is None else tuple(params[n] for n in names)

    def _run(self, conn: Any, params: dict[str, Any] | list[dict[str, Any]], fetch: bool) -> Any:
        if not conn.get_execution_options().get(SHORTCUTS_OPTION, True):
            return self._run_core(conn, params, fetch)
        many = isinstance(params, list)
        sql, processors, fixed, names = self._compile(conn.dialect, tuple((params[0] if many else params).keys()))
        dbapi_conn = conn.connection
        cursor = dbapi_conn.cursor()
        try:
            converted = ([self._convert(p, processors, fixed, names) for p in params] if many
                         else self._convert(params, processors, fixed, names))
            if conn.dispatch.before_cursor_execute:  # observers of the engine see these statements too
                conn.dispatch.before_cursor_execute(conn, cursor, sql, converted, None, many)
            if many:
                cursor.executemany(sql, converted)
            else:
                cursor.execute(sql, converted)
            return cursor.fetchone() if fetch else cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            raise as_sqlalchemy(exc, conn.dialect, dbapi_conn, cursor, sql, params, conn.invalidate) from exc
        finally:
            cursor.close()

    def _run_core(self, conn: Any, params: dict[str, Any] | list[dict[str, Any]], fetch: bool) -> Any:
        """The switch off: SQLAlchemy's own execution, answered as the shortcut answers (the
        row count of an INSERT too: SQLAlchemy keeps it only when asked to preserve it)."""
        result = conn.execute(self.statement, params, execution_options=_PRESERVE_ROWCOUNT)
        if fetch:
            row = result.first()
            return None if row is None else tuple(row)
        rowcount = result.rowcount
        result.close()
        return rowcount

    def run(self, conn: Any, params: dict[str, Any] | list[dict[str, Any]]) -> int:
        """Execute (``params`` a list: executemany); :return: the row count."""
        return self._run(conn, params, fetch=False)

    def first(self, conn: Any, params: dict[str, Any]) -> tuple | None:
        """Execute; :return: the first row as the driver returns it, or None."""
        return self._run(conn, params, fetch=True)


def call_in_autocommit(engine: Any, sql: str, params: tuple) -> Any:
    """The first column of the one row ``sql`` answers, sent through the driver on a pooled
    connection in autocommit (the statement commits by itself), with no SQLAlchemy connection
    around it: for a caller whose whole unit of work is that one statement (accepting a
    purchase: one call of the accept function). Public interfaces only (``raw_connection``,
    the driver's ``autocommit``), so ``ROP_DRIVER_SHORTCUTS`` does not apply; the engine's
    ``before_cursor_execute`` listeners do not see it (there is no SQLAlchemy connection to
    give them). Driver errors are raised as SQLAlchemy's, and a connection the server
    dropped is invalidated in the pool, as :class:`DriverStatement` does."""
    fairy = raw_connection(engine, sql, params)
    driver = fairy.driver_connection
    try:
        driver.autocommit = True
        try:
            return driver.execute(sql, params).fetchone()[0]
        finally:
            if not driver.closed:
                driver.autocommit = False
    except engine.dialect.loaded_dbapi.Error as exc:
        raise as_sqlalchemy(exc, engine.dialect, driver, None, sql, params, fairy.invalidate) from exc
    finally:
        fairy.close()


def raw_connection(engine: Any, sql: str | None = None, params: Any = None) -> Any:
    """``engine.raw_connection()`` (a pooled connection, its driver's at
    ``.driver_connection``), with the driver's errors raised as SQLAlchemy's, as a
    :class:`~sqlalchemy.engine.Connection` raises them: the pool's checkout connects (a new
    connection, or one replacing a dead one) and raises the driver's own error when the
    server refuses it — a database restarting would otherwise be a 500, not a 503.
    ``sql``/``params``: what the connection was for (in the error)."""
    from sqlalchemy.exc import DBAPIError

    try:
        return engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, params, exc, engine.dialect.loaded_dbapi.Error,
                                  dialect=engine.dialect) from exc


def as_sqlalchemy(exc: Exception, dialect: Any, dbapi_conn: Any, cursor: Any, sql: str, params: Any,
                   invalidate: Any) -> Exception:
    """The driver's error ``exc`` as SQLAlchemy raises it (``IntegrityError``,
    ``OperationalError`` …); a lost connection is invalidated (``invalidate(exc)``) first."""
    from sqlalchemy.exc import DBAPIError

    disconnected = dialect.is_disconnect(exc, dbapi_conn, cursor)
    if disconnected:
        invalidate(exc)
    return DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, connection_invalidated=disconnected,
                               dialect=dialect)
