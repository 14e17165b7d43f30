"""The events feed's order (``GET /v1/events``): ``bus_events.feed_seq``, given after the
commit, in commit order.

``seq`` is taken from its sequence when an event is inserted, so two transactions can commit
their events out of ``seq`` order: a batch's long unit of work inserts event 10, a quick
accept inserts event 11 and commits first. A follower reading in between would see 11, move
its cursor past it and never see 10. So the feed pages by ``feed_seq`` instead, which
:func:`sequence` gives to the committed events that have none, in one transaction, one
sequencer at a time (a transaction-level advisory lock): a pass sees every event committed
before it, and its numbers are all higher than the passes' before it. Whatever a follower
has seen, every event with a lower ``feed_seq`` was visible with it.

On SQLite one transaction writes at a time, so ``seq`` order is commit order: the pass
copies ``seq``. The events stored before this column came keep their ``seq`` as
``feed_seq`` (migration 0028), so the cursors followers hold stay valid.
"""
from __future__ import annotations

from sqlalchemy import text

#: the advisory lock only one sequencer holds at a time (PostgreSQL)
LOCK_KEY = 7_201_028
#: the most events one pass numbers
PASS_LIMIT = 10_000

_ANY = text("SELECT 1 FROM bus_events WHERE feed_seq IS NULL LIMIT 1")
_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")
_NUMBER_PG = text(
    "UPDATE bus_events e SET feed_seq = n.f "
    "FROM (SELECT seq, nextval('bus_events_feed_seq') AS f FROM ("
    "  SELECT seq FROM bus_events WHERE feed_seq IS NULL ORDER BY seq LIMIT :limit FOR UPDATE) t) n "
    "WHERE e.seq = n.seq")
_NUMBER_SQLITE = text("UPDATE bus_events SET feed_seq = seq WHERE feed_seq IS NULL")


def sequence(engine) -> int:
    """Give ``feed_seq`` to the committed events that have none (up to :data:`PASS_LIMIT`,
    oldest first), in a transaction of its own; :return: how many (0 also when another
    sequencer is at it: what it numbers shows once it commits)."""
    with engine.connect() as conn:
        if conn.execute(_ANY).first() is None:
            return 0
    with engine.begin() as conn:
        if conn.dialect.name != "postgresql":
            return conn.execute(_NUMBER_SQLITE).rowcount
        if not conn.execute(_LOCK, {"key": LOCK_KEY}).scalar():
            return 0
        return conn.execute(_NUMBER_PG, {"limit": PASS_LIMIT}).rowcount
