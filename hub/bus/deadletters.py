"""Dead letters: list them, replay them once the cause is fixed, or discard them."""
from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from hub.bus.models import DeadLetter
from hub.bus.outbox import enqueue_envelope
from hub.db import UnitOfWork, utcnow
from hub.errors import NotFound, ValidationFailed


def list_dead_letters(uow: UnitOfWork, *, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
    """The dead letters, newest first (platform-level: the operator's view); the replayed and
    discarded ones only with ``include_replayed``."""
    query = select(DeadLetter).order_by(DeadLetter.created_at.desc()).limit(limit)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None), DeadLetter.discarded_at.is_(None))
    return list(uow.session.execute(query).scalars())


def replay_dead_letters(app: Flask, uow: UnitOfWork, ids: list[str]) -> list[DeadLetter]:
    """Enqueue each dead letter's (message, handler) again with fresh retries; mark it replayed.

    All ids are checked first: :raise NotFound: for an unknown id (nothing replayed then).
    The caller commits; the jobs are enqueued after the commit.
    """
    letters = get_dead_letters(uow, ids)
    for letter in letters:
        letter.replayed_at = utcnow()
        envelope, handler = letter.envelope, letter.handler
        uow.after_commit(lambda e=envelope, h=handler: enqueue_envelope(app, e, [h]))
    return letters


def get_dead_letters(uow: UnitOfWork, ids: list[str]) -> list[DeadLetter]:
    """The dead letters ``ids``, in that order. :raise NotFound: for an unknown id."""
    letters = []
    for letter_id in ids:
        letter = uow.session.get(DeadLetter, letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id!r}")
        letters.append(letter)
    return letters


def discard_dead_letters(uow: UnitOfWork, ids: list[str]) -> list[DeadLetter]:
    """Mark dead letters discarded: they leave the list and are never replayed from it.

    All ids are checked first (nothing is discarded on an error): :raise NotFound: an unknown
    id; :raise ValidationFailed: one already replayed or discarded. The caller commits.
    """
    letters = get_dead_letters(uow, ids)
    settled = [letter.id for letter in letters if letter.replayed_at or letter.discarded_at]
    if settled:
        raise ValidationFailed(f"already replayed or discarded: {', '.join(settled)}", errors={"ids": settled})
    now = utcnow()
    for letter in letters:
        letter.discarded_at = now
    return letters
