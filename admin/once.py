"""One-time slots: what a POST made that must be shown once on the page it redirects to.

A form that acts (create a client, rotate its secret) stores what it made in Redis and
redirects (post/redirect/get); the page it redirects to takes the slot, which deletes it.
A refresh of that page finds the slot empty ("already shown") and repeats nothing. A slot
belongs to the admin user who filled it and is forgotten after :data:`SLOT_SECONDS`.
"""
from __future__ import annotations

import json
import secrets
from typing import Any

from rop_admin.security import current_admin

from hub.state import current_state

#: How long an unread slot is kept.
SLOT_SECONDS = 10 * 60


def _key(token: str) -> str:
    user = current_admin() or {}
    return f"rop:admin:once:{user.get('id', '-')}:{token}"


def put(value: dict[str, Any]) -> str:
    """Keep ``value`` for the logged-in admin user; return the slot's token (for the redirect)."""
    token = secrets.token_urlsafe(16)
    current_state().redis.set(_key(token), json.dumps(value), ex=SLOT_SECONDS)
    return token


def take(token: str) -> dict[str, Any] | None:
    """The slot's value, deleting it (atomically: two tabs cannot both read it); None when it was
    already taken, expired, or filled by another admin user."""
    pipe = current_state().redis.pipeline(transaction=True)
    pipe.get(_key(token))
    pipe.delete(_key(token))
    raw, _ = pipe.execute()
    return json.loads(raw) if raw else None
