"""PostgreSQL: ``rop_accept_v2(jsonb)``, the accept function taking its argument as ``jsonb``
(docs/transactions.md, "Accepting on PostgreSQL").

``rop_accept_v1(json)`` read its one argument, about 5 KB, with ``->`` and ``->>`` some
twenty times. A ``json`` value is text: each of those operators parses the document again
from its start. ``jsonb`` is parsed once, when the call's argument is read; its operators
then look fields up in the parsed value. Measured on one connection (bench/RESULTS.md):
0.76 ms of the server's CPU per accepted purchase with ``json``, 0.51 ms with ``jsonb``.

The body is ``rop_accept_v1``'s with ``jsonb`` for ``json`` (``jsonb_populate_record`` and
``jsonb_populate_recordset``): the same rows, the same answers, the same errors. It is
installed beside ``rop_accept_v1``, which processes of the release before still call during
a rolling deploy; a later migration drops ``rop_accept_v1``.

SQLite has no functions: nothing to do there (it keeps the Python path).

Revision ID: 0027_accept_function_jsonb
Revises: 0026_accept_function
Create Date: 2026-12-07 04:30:00
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0027_accept_function_jsonb"
down_revision = "0026_accept_function"
branch_labels = None
depends_on = None


def _accept_v1() -> str:
    """``rop_accept_v1``'s definition, from its migration beside this one (a migration never
    changes once released, so this is the text 0026 installed)."""
    path = Path(__file__).with_name("0026_accept_function.py")
    spec = importlib.util.spec_from_file_location("rop_migration_0026", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ACCEPT_V1


def accept_v2(v1: str) -> str:
    """``rop_accept_v2``'s definition: ``rop_accept_v1``'s with ``jsonb`` for ``json``."""
    for old, new in (("rop_accept_v1(p json)", "rop_accept_v2(p jsonb)"), ("trx json :=", "trx jsonb :="),
                     ("hld json :=", "hld jsonb :="), ("json_populate_record", "jsonb_populate_record")):
        if old not in v1:
            raise RuntimeError(f"rop_accept_v1 has no {old!r}: rop_accept_v2 cannot be derived from it")
        v1 = v1.replace(old, new)
    return v1


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(accept_v2(_accept_v1()))  # as it is (``:available`` is no bind parameter)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS rop_accept_v2(jsonb)")
