"""Dead letters: list them, replay them once the cause is fixed."""
from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from hub.bus.models import DeadLetter
from hub.bus.outbox import enqueue_envelope
from hub.db import UnitOfWork, utcnow
from hub.errors import NotFound


def list_dead_letters(uow: UnitOfWork, *, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
    """The dead letters, newest first (platform-level: the operator's view)."""
    query = select(DeadLetter).order_by(DeadLetter.created_at.desc()).limit(limit)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None))
    return list(uow.session.execute(query).scalars())


def _letters(uow: UnitOfWork, ids: list[str]) -> list[DeadLetter]:
    """The dead letters ``ids``, all checked first. :raise NotFound: for an unknown id."""
    letters = []
    for letter_id in ids:
        letter = uow.session.get(DeadLetter, letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id!r}")
        letters.append(letter)
    return letters


def discard_dead_letters(uow: UnitOfWork, ids: list[str]) -> list[dict]:
    """Delete dead letters that will never be replayed (the cause is known and handled).

    All ids are checked first: :raise NotFound: for an unknown id (nothing deleted then).
    :return: what each was (id, message id, type, handler, tenant, attempts, last error,
        envelope), for the caller's audit entry. The caller commits.
    """
    gone = []
    for letter in _letters(uow, ids):
        gone.append({"id": letter.id, "message_id": letter.message_id, "type": letter.type,
                     "handler": letter.handler, "tenant_id": letter.tenant_id, "attempts": letter.attempts,
                     "last_error": letter.last_error, "envelope": letter.envelope})
        uow.session.delete(letter)
    uow.flush()
    return gone


def replay_dead_letters(app: Flask, uow: UnitOfWork, ids: list[str]) -> list[DeadLetter]:
    """Enqueue each dead letter's (message, handler) again with fresh retries; mark it replayed.

    All ids are checked first: :raise NotFound: for an unknown id (nothing replayed then).
    The caller commits; the jobs are enqueued after the commit.
    """
    letters = _letters(uow, ids)
    for letter in letters:
        letter.replayed_at = utcnow()
        envelope, handler = letter.envelope, letter.handler
        uow.after_commit(lambda e=envelope, h=handler: enqueue_envelope(app, e, [h]))
    return letters
