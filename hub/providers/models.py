"""Tables of the providers service: configurations, per-tenant enablement, callback log."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, utcnow


class ProviderConfig(Base):
    """One configured connection to a provider: platform-wide (tenant_id NULL) or a tenant's own."""

    __tablename__ = "provider_configs"
    __public_name__ = "provider configuration"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_code: Mapped[str] = mapped_column(String(64), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True, nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    credentials_encrypted: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)  # the kill switch
    all_tenants: Mapped[bool] = mapped_column(Boolean, default=True)  # platform-wide: every tenant
    #: set when ``rop providers remove`` retired it (it had history): no new purchase ever
    #: goes to it again; purchases already sent there keep their status checks and callbacks
    retired_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProviderConfigTenant(Base):
    """A platform-wide configuration enabled for one tenant (when ``all_tenants`` is off)."""

    __tablename__ = "provider_config_tenants"
    __table_args__ = (UniqueConstraint("config_id", "tenant_id", name="uq_provider_config_tenant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    config_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProviderCallback(Base):
    """Every callback received, accepted or rejected (with the reason)."""

    __tablename__ = "provider_callbacks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_code: Mapped[str] = mapped_column(String(64), index=True)
    config_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True, nullable=True)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    ref_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")  # as received, whole (ROP_MAX_BODY_CALLBACK)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
