"""The base revision: an empty schema that every service's history starts from.

Revision ID: 0001_base
Revises:
Create Date: 2026-11-25
"""
from __future__ import annotations

revision = "0001_base"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
