"""When a dependency is away: which errors mean "the database or Redis is unreachable".

The hub has two dependencies every request may touch, the database and Redis. When one of
them is down (stopped, restarting, unreachable, its pool exhausted) the request cannot be
answered now but can be later: that is a ``503 Service Unavailable`` with ``Retry-After``
(``hub.errors`` renders it once for every route), never a 500. A 503 from a write means it
was not done or, at worst, committed without its answer reaching the client: every write of
the API is idempotent by its ``ref_id``, so the client sends the same request again.

Not every driver error is an outage: a syntax error or a missing table is a bug (500).
PostgreSQL's ``OperationalError`` family is about the server's state (connection lost,
server shutting down, lock or statement timeouts, serialization failures): all of it is
worth a retry. SQLite raises ``OperationalError`` for bugs too, so only its messages about
the file being unreachable or busy count.
"""
from __future__ import annotations

import sqlite3

import redis.exceptions
from sqlalchemy import exc as sa_exc

#: Seconds a client is asked to wait before trying again (``Retry-After``).
RETRY_AFTER = 5

#: Redis is unreachable: refused, timed out, connection lost (``BusyLoadingError``, a server
#: still loading its data after a restart, is a ``ConnectionError`` too).
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

#: Database errors that may mean the database is unreachable (:func:`database_unavailable`
#: decides which do).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (sa_exc.DBAPIError, sa_exc.DisconnectionError,
                                                    sa_exc.TimeoutError)

#: SQLite's messages for a database file that cannot be reached or is busy past its timeout.
_SQLITE_UNAVAILABLE = ("unable to open database file", "database is locked", "disk i/o error",
                       "database table is locked", "readonly database")


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now (rather than a bug)."""
    if isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
        return True  # a failed liveness ping; the pool's wait for a connection ran out
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa_exc.OperationalError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        message = str(exc.orig).lower()
        return any(part in message for part in _SQLITE_UNAVAILABLE)
    return True


def unavailable_dependency(exc: BaseException) -> str | None:
    """``"redis"`` or ``"database"`` when ``exc`` means that dependency is away, else None."""
    if isinstance(exc, REDIS_ERRORS):
        return "redis"
    if isinstance(exc, DATABASE_ERRORS) and database_unavailable(exc):
        return "database"
    return None
