"""The one tenant-scoped query helper through which all tenant data is read.

Every table that holds a tenant's data has a ``tenant_id`` column. Services build their
queries with :func:`tenant_select` and fetch single rows with :func:`get_owned`, so that
another tenant's id answers 404 (never 403: no existence leaks) and a forgotten filter
cannot happen in a view.
"""
from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from hub.context import CallContext
from hub.errors import NotFound

T = TypeVar("T")


def tenant_select(ctx: CallContext, model: type[T]) -> Select[tuple[T]]:
    """``SELECT model WHERE tenant_id = ctx.tenant_id``.

    :raise NotFound: when the context has no tenant (a platform call must say which tenant).
    """
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    return select(model).where(model.tenant_id == ctx.tenant_id)  # type: ignore[attr-defined]


def get_owned(session: Session, ctx: CallContext, model: type[T], ident: Any, *,
              for_update: bool = False, what: str | None = None) -> T:
    """The row ``ident`` of ``model`` if it belongs to the caller's tenant.

    :param for_update: lock the row (``SELECT … FOR UPDATE``; on SQLite the transaction
        already holds the write lock, see :mod:`hub.db`).
    :raise NotFound: when it does not exist or belongs to another tenant.
    """
    stmt = tenant_select(ctx, model).where(model.id == ident)  # type: ignore[attr-defined]
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        label = what or getattr(model, "__public_name__", model.__name__.lower())
        raise NotFound(f"{label} {ident!r} not found")
    return row
