"""Alembic environment: the URL comes from the hub (``hub.migrate``), never from a file."""
from __future__ import annotations

from alembic import context

from hub.db import make_engine
from hub.migrate import load_models

config = context.config
target_metadata = load_models()


def _url() -> str:
    url = config.attributes.get("database_url")
    if not url:
        from hub.config import Config

        url = Config.from_env().database_url
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
