"""Alembic, driven from the hub's configuration (``rop db upgrade``) and from tests.

The migration scripts live in the top-level ``migrations/`` folder, installed as the
``rop_migrations`` package so that an installed hub finds them too.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from hub.db import Base


def load_models() -> MetaData:
    """Import every service's ``models`` module and return the complete metadata."""
    from hub.app import SERVICE_PACKAGES

    for package in SERVICE_PACKAGES:
        name = f"{package}.models"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    return Base.metadata


def alembic_config(database_url: str) -> AlembicConfig:
    import rop_migrations

    folder = Path(rop_migrations.__file__).parent
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(folder))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Apply the migrations up to ``revision`` (all heads by default)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


#: The database functions the code calls on PostgreSQL (signatures), installed by migrations.
POSTGRES_FUNCTIONS: tuple[str, ...] = ("rop_accept_v2(jsonb)",)
#: The sequences the code takes numbers from on PostgreSQL beside the tables' own (the events
#: feed's, hub.bus.feed), created by migrations.
POSTGRES_SEQUENCES: tuple[str, ...] = ("bus_events_feed_seq",)


_SQLITE_WHERE = re.compile(r"\)\s+where\s+(.+)$", re.IGNORECASE | re.DOTALL)


def _predicate(where: object) -> str | None:
    """An index's ``WHERE`` in a form both databases' spellings compare equal in."""
    if where is None:
        return None
    return " ".join(str(where).replace("(", " ").replace(")", " ").upper().split())


def index_predicates(conn) -> dict[str, str | None]:
    """Each index of the database by name, with its ``WHERE`` as the database keeps it (None:
    a full index); empty on a database other than PostgreSQL and SQLite."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # the indexes of the schemas on the search path only (a same-named index elsewhere is not ours)
        return dict(conn.exec_driver_sql(
            "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE pg_table_is_visible(c.oid)").all())
    if dialect == "sqlite":
        # SQLite keeps an index's CREATE statement as written: its WHERE follows the column list
        return {name: match.group(1) if sql and (match := _SQLITE_WHERE.search(sql)) else None for name, sql in
                conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'")}
    return {}


def index_predicate_drift(conn, metadata: MetaData) -> list[tuple]:
    """``("index_predicate", index, in the models, in the database)`` for each index of the
    models whose ``WHERE`` (a partial index: hub.db.partial) the database does not have, or
    has another of (Alembic's comparison looks at the columns only)."""
    dialect = conn.dialect.name
    found = {name: _predicate(where) for name, where in index_predicates(conn).items()}
    out = []
    for table in metadata.tables.values():
        for index in table.indexes:
            if index.name not in found:
                continue  # a missing index is compare_metadata's to report
            wanted = _predicate(index.dialect_options[dialect].get("where"))
            if wanted != found[index.name]:
                out.append(("index_predicate", index.name, wanted, found[index.name]))
    return out


def drift(engine) -> list:
    """Differences between the models and the migrated database (empty when in step); on
    PostgreSQL also ``("missing_function", signature)`` for each of :data:`POSTGRES_FUNCTIONS`
    and ``("missing_sequence", name)`` for each of :data:`POSTGRES_SEQUENCES` the database
    lacks."""
    metadata = load_models()
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        differences = list(compare_metadata(ctx, metadata))
        differences += index_predicate_drift(conn, metadata)
        if conn.dialect.name == "postgresql":
            differences += [("missing_function", signature) for signature in POSTGRES_FUNCTIONS
                            if conn.exec_driver_sql("SELECT to_regprocedure(%s)", (signature,)).scalar() is None]
            differences += [("missing_sequence", name) for name in POSTGRES_SEQUENCES
                            if conn.exec_driver_sql("SELECT to_regclass(%s)", (name,)).scalar() is None]
        return differences
