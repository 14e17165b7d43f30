"""Tables of the products service: the catalog, provider offers, history, syncs, price rules.

- A :class:`Product` is what a tenant buys (``code`` is its public identifier). It is sold
  through one or more :class:`Offer` rows: one provider configuration's SKU and cost.
  Offers are keyed by ``(config_id, provider_sku)`` and are never deleted: an offer that
  is no longer in its provider's catalog is marked ``vanished``; a product whose last
  active offer is gone becomes ``unavailable`` (never deleted either).
- :class:`ProductChange` keeps every change of price (an offer's cost) and status.
- :class:`CatalogSync` records each sync run, including the failed ones.
- :class:`PriceRule` is one pricing rule, owned by the platform (the platform price list,
  ``owner = "platform"``) or by one tenant (``owner = <tenant id>``); see
  :mod:`hub.products.pricing`. :class:`PriceRuleChange` is their history.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, new_id, utcnow

#: Product statuses. ``unavailable``: no active offer left (set by sync); ``disabled``: an admin
#: took it off sale.
PRODUCT_STATUSES = ("active", "unavailable", "disabled")
#: Offer statuses. ``inactive``: listed by the provider but not sellable now (its status flags);
#: ``vanished``: gone from the provider's catalog; ``disabled``: an admin switched it off.
OFFER_STATUSES = ("active", "inactive", "vanished", "disabled")
PRODUCT_TYPES = ("prepaid", "postpaid")
PLATFORM = "platform"


class Category(Base):
    __tablename__ = "product_categories"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    sort_order: Mapped[int] = mapped_column(Integer, default=100)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Brand(Base):
    __tablename__ = "product_brands"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Product(Base):
    __tablename__ = "products"
    __public_name__ = "product"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("prd"))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category_code: Mapped[str] = mapped_column(String(40), ForeignKey("product_categories.code"), index=True)
    brand_code: Mapped[str] = mapped_column(String(64), ForeignKey("product_brands.code"), index=True)
    type: Mapped[str] = mapped_column(String(10), default="prepaid")
    #: the face value in minor units where it has one (Pulsa 10,000; PLN 20,000), else NULL
    nominal: Mapped[int | None] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")
    currency: Mapped[str] = mapped_column(String(3), default="IDR")
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Offer(Base):
    """One provider configuration selling a product: its SKU there and what it costs the hub."""

    __tablename__ = "product_offers"
    __table_args__ = (UniqueConstraint("config_id", "provider_sku"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("pof"))
    product_id: Mapped[str] = mapped_column(String(40), ForeignKey("products.id"), index=True)
    config_id: Mapped[str] = mapped_column(String(40), index=True)
    provider_code: Mapped[str] = mapped_column(String(64))
    provider_sku: Mapped[str] = mapped_column(String(128))
    cost: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="IDR")
    status: Mapped[str] = mapped_column(String(16), default="active")
    #: an operator's preference: lower first (ties: cheaper first)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProductChange(Base):
    """One change of a product or one of its offers: ``field`` old → new (history)."""

    __tablename__ = "product_changes"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                      autoincrement=True)
    product_id: Mapped[str] = mapped_column(String(40), index=True)
    offer_id: Mapped[str | None] = mapped_column(String(40))
    #: created | status | cost | offer_status | offer_added | priority | name
    field: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str | None] = mapped_column(String(255))
    new_value: Mapped[str | None] = mapped_column(String(255))
    sync_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor: Mapped[str | None] = mapped_column(String(255))
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CatalogSync(Base):
    """One run of a provider configuration's catalog sync (kept also when it failed)."""

    __tablename__ = "catalog_syncs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("csy"))
    config_id: Mapped[str] = mapped_column(String(40), index=True)
    provider_code: Mapped[str] = mapped_column(String(64))
    #: running | succeeded | failed
    status: Mapped[str] = mapped_column(String(16), default="running")
    items: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    vanished: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class PriceRule(Base):
    """A pricing rule of the platform price list (``owner = "platform"``) or of one tenant.

    ``target`` is ``product:<code>``, ``category:<code>`` or ``all``. ``kind``:
    ``markup_percent`` (``value`` in basis points: 250 = 2.5 %), ``markup_fixed``
    (``value`` in minor units) or ``fixed_price`` (``value`` is the price).
    """

    __tablename__ = "price_rules"
    __table_args__ = (UniqueConstraint("owner", "target"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("prr"))
    owner: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="IDR")
    actor: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: Up by one on every update (an edit from a stale page is refused: ``set_rule(seen=...)``).
    version: Mapped[int] = mapped_column(Integer, server_default="1")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy reads it)


class PriceRuleChange(Base):
    """History of the price rules: who set, changed or removed which rule, before and after."""

    __tablename__ = "price_rule_changes"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                      autoincrement=True)
    owner: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str] = mapped_column(String(120))
    old_kind: Mapped[str | None] = mapped_column(String(16))
    old_value: Mapped[int | None] = mapped_column(BigInteger)
    new_kind: Mapped[str | None] = mapped_column(String(16))
    new_value: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(String(255))
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
