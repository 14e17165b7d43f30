"""Tables of the bulk service: jobs and their items (one item per input row).

A job's counters (``valid``, ``succeeded``, ...) are kept on its row and moved with
atomic ``UPDATE … SET n = n + 1`` statements in the same database transaction as the
item's status change, and only when that change really happened (a guarded
``UPDATE … WHERE status = <old>``), so a duplicate event never counts twice.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, new_id, utcnow

#: Job statuses. ``rejected``: a policy (``on_invalid``, ``on_insufficient_funds``) refused the file.
JOB_STATUSES = ("validating", "queued", "running", "completed", "cancelled", "rejected")
#: Item statuses: ``received`` (parsed, not yet validated), ``invalid``, ``valid`` (waiting to be
#: sent), ``submitted`` (a transaction exists, not final yet), ``succeeded``, ``failed``,
#: ``refunded``, ``review`` (the transaction waits for a person), ``cancelled`` (never sent:
#: the job was cancelled), ``skipped`` (never sent: the wallet ran out, or the file was rejected).
ITEM_STATUSES = ("received", "invalid", "valid", "submitted", "succeeded", "failed", "refunded", "review",
                 "cancelled", "skipped")


class BulkJob(Base):
    __tablename__ = "bulk_jobs"
    __public_name__ = "bulk job"
    __table_args__ = (UniqueConstraint("tenant_id", "idem_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("blk"))
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    client_id: Mapped[str | None] = mapped_column(String(80))
    #: ``ref:<the client's reference>`` or ``sha256:<the file's hash>``: what makes a resubmission the same job
    idem_key: Mapped[str] = mapped_column(String(300))
    reference: Mapped[str | None] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64))
    file_format: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str | None] = mapped_column(String(255))
    #: ``reject`` (any invalid row rejects the file) or ``skip`` (process the valid rows)
    on_invalid: Mapped[str] = mapped_column(String(10))
    #: ``reject`` (the wallet must cover the valid rows' total up front) or ``partial``
    #: (send rows until the wallet runs out; the rest are skipped)
    on_insufficient_funds: Mapped[str] = mapped_column(String(10))
    wallet_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="validating", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    #: set when a row met 402: the rows not sent yet are skipped
    funds_exhausted: Mapped[bool] = mapped_column(default=False)
    total: Mapped[int] = mapped_column(Integer, default=0)
    #: rows checked so far (moves while the job is ``validating``)
    validated: Mapped[int] = mapped_column(Integer, default=0)
    valid: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    submitted: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    refunded: Mapped[int] = mapped_column(Integer, default=0)
    review: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    #: the valid rows' total at validation (minor units), and what succeeded rows cost
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_succeeded: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(3))
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    completed_at: Mapped[dt.datetime | None] = mapped_column()


class BulkItem(Base):
    __tablename__ = "bulk_items"
    __table_args__ = (
        UniqueConstraint("job_id", "row"),
        Index("ix_bulk_items_job_status_row", "job_id", "status", "row"),
        Index("ix_bulk_items_job_ref", "job_id", "ref_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(40))
    #: the row's number in the file (1 = the first data row)
    row: Mapped[int] = mapped_column(Integer)
    ref_id: Mapped[str | None] = mapped_column(String(255))
    product_code: Mapped[str | None] = mapped_column(String(100))
    customer_no: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="received")
    price: Mapped[int | None] = mapped_column(BigInteger)
    transaction_id: Mapped[str | None] = mapped_column(String(40), index=True)
    serial_number: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
