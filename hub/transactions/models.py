"""Tables of the transactions service: transactions, their provider attempts, their
timeline, and postpaid inquiries.

A transaction is one purchase of one product for one customer number, idempotent by
``(tenant_id, ref_id)``. Every call to a provider is an *attempt*, written (state ``sent``)
and committed *before* the call, with its own reference at the provider (``<trx id>-<n>``);
an attempt found ``sent`` with no outcome is an unknown outcome (status checks with that
reference, never another purchase). The timeline keeps every state change, attempt,
callback, status check and operator action.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, new_id, partial, utcnow

#: Statuses (docs/transactions.md, "Lifecycle"). ``pending``: accepted, hold placed, not yet at a provider.
STATUSES = ("pending", "processing", "succeeded", "failed", "refunded", "review")
FINAL = frozenset({"succeeded", "failed", "refunded"})


class Transaction(Base):
    __tablename__ = "transactions"
    __public_name__ = "transaction"
    __table_args__ = (
        # ref_id first: a look-up of many (``used_ref_ids``) has them as its index condition (0015)
        UniqueConstraint("ref_id", "tenant_id"),
        Index("ix_transactions_tenant_created", "tenant_id", "created_at"),
        Index("ix_transactions_due", "status", "next_check_at"),
        # the operators' all-tenant list and the dashboard's per-hour figures filter on time alone
        Index("ix_transactions_created", "created_at"),
        # the admin's list by status, and its search by ref id prefix, customer number and
        # provider reference (0024)
        Index("ix_transactions_tenant_status_created", "tenant_id", "status", "created_at"),
        Index("ix_transactions_status_created", "status", "created_at"),
        Index("ix_transactions_ref_prefix", "ref_id", postgresql_ops={"ref_id": "varchar_pattern_ops"}),
        Index("ix_transactions_customer_no", "customer_no", postgresql_ops={"customer_no": "varchar_pattern_ops"}),
        # partial (0030): no provider reference when accepted, a source for bulk rows only
        Index("ix_transactions_provider_ref", "provider_ref", **partial("provider_ref IS NOT NULL")),
        Index("ix_transactions_source", "source", **partial("source IS NOT NULL")),
        Index("ix_transactions_tenant_price", "tenant_id", "price"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("trx"))
    tenant_id: Mapped[str] = mapped_column(String(40))
    #: the API client that submitted it (or the service acting for it)
    client_id: Mapped[str | None] = mapped_column(String(64))
    ref_id: Mapped[str] = mapped_column(String(255))
    #: sha256 of the request body: the same ref_id with another body is a 409
    fingerprint: Mapped[str] = mapped_column(String(64))
    product_code: Mapped[str] = mapped_column(String(64), index=True)
    product_type: Mapped[str] = mapped_column(String(16), default="prepaid")  # prepaid | postpaid
    category: Mapped[str | None] = mapped_column(String(32))
    customer_no: Mapped[str] = mapped_column(String(64))
    inquiry_id: Mapped[str | None] = mapped_column(String(40))
    wallet_id: Mapped[str] = mapped_column(String(40))
    hold_id: Mapped[str | None] = mapped_column(String(40))
    price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    #: the product's offers when accepted: [{config_id, provider_code, provider_sku, cost, priority}]
    offers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: the config ids in the order to try, decided at the first processing step
    route: Mapped[list[str] | None] = mapped_column(JSON)
    #: how many attempts were made (the current attempt is the last)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    provider_code: Mapped[str | None] = mapped_column(String(64))
    config_id: Mapped[str | None] = mapped_column(String(40))
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    serial_number: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    #: who submitted it besides the API: ``bulk:<job>:<row>``
    source: Mapped[str | None] = mapped_column(String(255))
    #: status checks made of the current attempt, and when the next is due (also the
    #: safety net that re-drives a transaction whose processing message was lost)
    check_count: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[dt.datetime | None] = mapped_column()
    #: past this a transaction still pending at its provider goes to ``review``
    deadline_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column()


class Attempt(Base):
    """One provider call of a transaction (a purchase), and what came of it."""

    __tablename__ = "transaction_attempts"
    __table_args__ = (UniqueConstraint("transaction_id", "seq"), UniqueConstraint("reference"),
                      Index("ix_transaction_attempts_sent", "sent_at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer)
    config_id: Mapped[str] = mapped_column(String(40))
    provider_code: Mapped[str] = mapped_column(String(64))
    provider_sku: Mapped[str] = mapped_column(String(64))
    #: the reference the provider knows this purchase by (our ref_id at the provider)
    reference: Mapped[str] = mapped_column(String(128))
    #: sent (no answer yet) | success | pending | rejected | failed | unknown | refunded
    state: Mapped[str] = mapped_column(String(16), default="sent")
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    serial_number: Mapped[str | None] = mapped_column(Text)
    response_code: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[int | None] = mapped_column(BigInteger)
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    #: rejected without leaving the hub (switched off, breaker open, no connection, unusable
    #: at the claim): not the provider's rejection (the dashboard counts these apart)
    not_sent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class TimelineEntry(Base):
    """One line of a transaction's history (GET /v1/transactions/{id} shows them)."""

    __tablename__ = "transaction_timeline"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    #: status | attempt | outcome | callback | status_check | operator | anomaly
    kind: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Inquiry(Base):
    """A postpaid bill looked up at a provider; its payment transaction takes the amount from it."""

    __tablename__ = "transaction_inquiries"
    __public_name__ = "inquiry"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("inq"))
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    product_code: Mapped[str] = mapped_column(String(64))
    customer_no: Mapped[str] = mapped_column(String(64))
    config_id: Mapped[str] = mapped_column(String(40))
    provider_code: Mapped[str] = mapped_column(String(64))
    provider_sku: Mapped[str] = mapped_column(String(64))
    #: the reference the provider knows the bill by; the payment re-uses it
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    #: what the tenant pays: the bill plus the tenant's price of the product (its fee)
    amount: Mapped[int] = mapped_column(BigInteger)
    bill_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    customer_name: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    expires_at: Mapped[dt.datetime] = mapped_column()
    transaction_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
