"""Tables of the wallets service: wallets, the double-entry journal and entries, holds.

Ledger accounts are named by a code: each wallet has two, ``<wallet_id>:available`` and
``<wallet_id>:held``; each tenant has system accounts per currency,
``sys:funding:<CUR>`` (where top-ups come from) and ``sys:settlement:<CUR>`` (where
captured holds go). Every journal's entries sum to zero. A wallet's ``available`` and
``held`` columns cache the balances of its two accounts and are updated in the journal's
transaction under the wallet's row lock; system account balances are not cached (they
are hot rows; ``verify`` computes them).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, new_id, partial, utcnow


class Wallet(Base):
    __tablename__ = "wallets"
    __public_name__ = "wallet"
    __table_args__ = (UniqueConstraint("tenant_id", "owner_ref"), UniqueConstraint("main_of"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("wal"))
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    owner_ref: Mapped[str | None] = mapped_column(String(255))
    #: the tenant id for the tenant's main wallet, NULL for sub-wallets (one main per tenant)
    main_of: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3), default="IDR")
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    overdraft_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @property
    def is_main(self) -> bool:
        return self.main_of is not None


class Journal(Base):
    """One posting: its entries sum to zero. Carries the caller's idempotency key."""

    __tablename__ = "wallet_journals"
    #: idem_key first: a look-up of many keys (``idem_key IN (...)``) has them as its index
    #: condition whatever statistics PostgreSQL has (migration 0015)
    __table_args__ = (UniqueConstraint("idem_key", "tenant_id", "kind"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("jnl"))
    tenant_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))
    idem_key: Mapped[str | None] = mapped_column(String(255))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Entry(Base):
    """One leg of a journal: a signed amount on one account, and that account's balance after it."""

    __tablename__ = "wallet_entries"
    __table_args__ = (Index("ix_wallet_entries_wallet_seq", "wallet_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                      autoincrement=True)
    # no index of its own on the tenant or the account (0030): a statement reads by tenant and
    # wallet (ix_wallet_entries_wallet_seq), the ledger check sums the whole table by account
    tenant_id: Mapped[str] = mapped_column(String(40))
    journal_id: Mapped[str] = mapped_column(String(40), ForeignKey("wallet_journals.id"), index=True)
    wallet_id: Mapped[str | None] = mapped_column(String(40))
    account: Mapped[str] = mapped_column(String(80))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: the account's balance after this entry (NULL for uncached system accounts)
    balance_after: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Hold(Base):
    """Funds moved from a wallet's available to its held account, awaiting capture or void."""

    __tablename__ = "wallet_holds"
    __public_name__ = "hold"
    # a purchase's hold never expires: the expiry job's index holds only those that do (0030)
    __table_args__ = (Index("ix_wallet_holds_expires_at", "expires_at", **partial("expires_at IS NOT NULL")),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("hld"))
    tenant_id: Mapped[str] = mapped_column(String(40))  # read by id: no index of its own (0030)
    wallet_id: Mapped[str] = mapped_column(String(40), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    captured: Mapped[int] = mapped_column(BigInteger, default=0)
    reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    #: placed | captured | partially_captured | voided
    status: Mapped[str] = mapped_column(String(20), default="placed", index=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column()
    reference: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantLimits(Base):
    """A tenant's own limits per money operation (hub.wallets.limits): ``{kind or "default": amount}``."""

    __tablename__ = "wallet_tenant_limits"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str | None] = mapped_column(String(254))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Approval(Base):
    """An operator's top-up or adjustment as it passed the four-eyes gate (hub.wallets.approvals).

    ``applied``: under the thresholds, applied at once; ``pending``: waiting for a second
    operator, who ``approved`` (then applied, once) or ``rejected`` it. The rows of an
    operator's UTC day make their daily total.
    """

    __tablename__ = "wallet_approvals"
    __public_name__ = "approval"
    __table_args__ = (Index("ix_wallet_approvals_requester_day", "requested_by", "requested_at"),
                      UniqueConstraint("tenant_id", "kind", "ref"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("apr"))
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    wallet_id: Mapped[str] = mapped_column(String(40))
    #: topup | adjustment
    kind: Mapped[str] = mapped_column(String(20))
    #: signed for an adjustment
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(500))
    #: the idempotency key of the operation
    ref: Mapped[str] = mapped_column(String(255))
    #: applied | pending | approved | rejected
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: why it waits: the amount or the daily total it is above (None when applied at once)
    why: Mapped[str | None] = mapped_column(String(255))
    requested_by: Mapped[str] = mapped_column(String(254))
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(254))
    decided_at: Mapped[dt.datetime | None] = mapped_column()
    note: Mapped[str | None] = mapped_column(String(500))
    journal_id: Mapped[str | None] = mapped_column(String(40))
