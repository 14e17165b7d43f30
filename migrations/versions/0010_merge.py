"""Merge the service branches written in parallel (tenancy, bus, providers, wallets) into one head.

Revision ID: 0010_merge
Revises: 0002_tenancy, 0003_bus, 0005_providers, 0007_wallets
Create Date: 2026-11-25 15:20:00
"""
from __future__ import annotations

revision = "0010_merge"
down_revision = ("0002_tenancy", "0003_bus", "0005_providers", "0007_wallets")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
