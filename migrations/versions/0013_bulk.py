"""bulk: jobs and their items

Revision ID: 0013_bulk
Revises: 0012_transactions
Create Date: 2026-11-25 15:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hub.db

revision = '0013_bulk'
down_revision = '0012_transactions'
branch_labels = ('bulk',)
depends_on = None


def upgrade() -> None:
    op.create_table('bulk_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('ref_id', sa.String(length=255), nullable=True),
    sa.Column('product_code', sa.String(length=100), nullable=True),
    sa.Column('customer_no', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=True),
    sa.Column('transaction_id', sa.String(length=40), nullable=True),
    sa.Column('serial_number', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bulk_items')),
    sa.UniqueConstraint('job_id', 'row', name=op.f('uq_bulk_items_job_id_row'))
    )
    with op.batch_alter_table('bulk_items', schema=None) as batch_op:
        batch_op.create_index('ix_bulk_items_job_ref', ['job_id', 'ref_id'], unique=False)
        batch_op.create_index('ix_bulk_items_job_status_row', ['job_id', 'status', 'row'], unique=False)
        batch_op.create_index(batch_op.f('ix_bulk_items_transaction_id'), ['transaction_id'], unique=False)

    op.create_table('bulk_jobs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('client_id', sa.String(length=80), nullable=True),
    sa.Column('idem_key', sa.String(length=300), nullable=False),
    sa.Column('reference', sa.String(length=255), nullable=True),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_format', sa.String(length=20), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=True),
    sa.Column('on_invalid', sa.String(length=10), nullable=False),
    sa.Column('on_insufficient_funds', sa.String(length=10), nullable=False),
    sa.Column('wallet_id', sa.String(length=40), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('funds_exhausted', sa.Boolean(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('validated', sa.Integer(), nullable=False),
    sa.Column('valid', sa.Integer(), nullable=False),
    sa.Column('invalid', sa.Integer(), nullable=False),
    sa.Column('submitted', sa.Integer(), nullable=False),
    sa.Column('succeeded', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('refunded', sa.Integer(), nullable=False),
    sa.Column('review', sa.Integer(), nullable=False),
    sa.Column('cancelled', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('amount_succeeded', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('chunks', sa.Integer(), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bulk_jobs')),
    sa.UniqueConstraint('tenant_id', 'idem_key', name=op.f('uq_bulk_jobs_tenant_id_idem_key'))
    )
    with op.batch_alter_table('bulk_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bulk_jobs_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_bulk_jobs_tenant_id'), ['tenant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bulk_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bulk_jobs_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_bulk_jobs_status'))
    op.drop_table('bulk_jobs')
    with op.batch_alter_table('bulk_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bulk_items_transaction_id'))
        batch_op.drop_index('ix_bulk_items_job_status_row')
        batch_op.drop_index('ix_bulk_items_job_ref')
    op.drop_table('bulk_items')
