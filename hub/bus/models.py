"""The bus's tables: outbox, processed-message records, dead letters, the tenant event
store, and webhook endpoints, deliveries and attempts."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, partial, utcnow

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_Seq = BigInteger().with_variant(Integer(), "sqlite")


class OutboxMessage(Base):
    """A message written in the same transaction as the state change that caused it."""

    __tablename__ = "bus_outbox"
    # the relay's queue, oldest first: the rows not sent yet alone (partial, 0030)
    __table_args__ = (Index("ix_bus_outbox_unpublished", "created_at", **partial("published_at IS NULL")),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the message id
    type: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(String(40))  # no index: no query filters on it (0030)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None]
    publish_count: Mapped[int] = mapped_column(Integer, default=0)


class ProcessedMessage(Base):
    """Proof that ``handler`` has handled message ``message_id`` (committed with its effect)."""

    __tablename__ = "bus_processed"

    message_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    handler: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    processed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """A (message, handler) that failed on every attempt."""

    __tablename__ = "bus_dead_letters"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(40), index=True)
    type: Mapped[str] = mapped_column(String(100))
    handler: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    last_error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    replayed_at: Mapped[dt.datetime | None]
    discarded_at: Mapped[dt.datetime | None]  # an operator decided it is not to be replayed


class TenantEvent(Base):
    """Every event of a tenant, for ``GET /v1/events``. ``seq`` is given at the insert;
    ``feed_seq``, the feed's ``sequence`` and cursor, is given after the commit, in commit
    order (:func:`hub.bus.feed.sequence`): a follower of the feed never skips an event whose
    transaction committed after a later-numbered one's."""

    __tablename__ = "bus_events"
    # Partial (0030): an event enters the feed's index once, when it is numbered; the
    # sequencer finds the events to number in an index of those alone.
    __table_args__ = (Index("ix_bus_events_tenant_feed", "tenant_id", "feed_seq", **partial("feed_seq IS NOT NULL")),
                      Index("ix_bus_events_unsequenced", "seq", **partial("feed_seq IS NULL")))

    seq: Mapped[int] = mapped_column(_Seq, primary_key=True, autoincrement=True)
    feed_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(40))  # the first column of ix_bus_events_tenant_feed
    type: Mapped[str] = mapped_column(String(100))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[dt.datetime]


class WebhookEndpoint(Base):
    """A tenant's webhook URL and signing secrets (the previous one while rotating)."""

    __tablename__ = "bus_webhook_endpoints"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_until: Mapped[dt.datetime | None]
    schedule: Mapped[str | None] = mapped_column(String(500))  # comma-separated seconds; None: default
    #: The event types it gets: comma-separated types or ``prefix.*`` patterns; None: every event.
    events: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event to deliver to one tenant's endpoint."""

    __tablename__ = "bus_webhook_deliveries"
    __table_args__ = (Index("ix_bus_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    event_id: Mapped[str] = mapped_column(String(40), index=True)
    event_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    """One POST of a delivery and how it went."""

    __tablename__ = "bus_webhook_attempts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    url: Mapped[str | None] = mapped_column(String(2000))  # where this attempt POSTed
    response_body: Mapped[str | None] = mapped_column(Text)  # the first RESPONSE_EXCERPT characters
