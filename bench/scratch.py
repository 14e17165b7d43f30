"""A scratch PostgreSQL database for a bench run, made and dropped through an admin URL."""
from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def scratch_database(base: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """A new database on ``base``'s server (``base``: any database there, e.g. ``postgres``);
    returns its SQLAlchemy URL (psycopg driver) and a function that drops it."""
    admin_url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.set(database=name).render_as_string(hide_password=False), drop
