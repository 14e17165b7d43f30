"""provider_callbacks.body holds the callback's body as it came, bytes (was text).

A callback's body is the provider's, not the hub's: it is stored whole and judged by the
provider's plugin. As text it was decoded with replacement characters and cut at 65,536
characters, and a NUL byte in it (PostgreSQL's text refuses NUL) lost the whole request with
its log row. Existing rows keep their text, encoded as UTF-8.

Revision ID: 0019_callback_body_bytes
Revises: 0018_token_version
Create Date: 2026-12-06 13:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_callback_body_bytes"
down_revision = "0018_token_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("provider_callbacks", "body", type_=sa.LargeBinary(), existing_nullable=False,
                        postgresql_using="convert_to(body, 'UTF8')")
        return
    with op.batch_alter_table("provider_callbacks") as batch_op:
        batch_op.alter_column("body", type_=sa.LargeBinary(), existing_type=sa.Text(), existing_nullable=False)
    op.execute("UPDATE provider_callbacks SET body = CAST(body AS BLOB)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("provider_callbacks", "body", type_=sa.Text(), existing_nullable=False,
                        postgresql_using="encode(body, 'escape')")  # NUL and invalid UTF-8 escaped
        return
    with op.batch_alter_table("provider_callbacks") as batch_op:
        batch_op.alter_column("body", type_=sa.Text(), existing_type=sa.LargeBinary(), existing_nullable=False)
    op.execute("UPDATE provider_callbacks SET body = CAST(body AS TEXT)")
