"""What other services (the admin UI) may call on the bulk service.

Each function takes the caller's ``ctx`` (with a tenant) and its unit of work; reads need
``bulk:read``, cancelling ``bulk:write``. Results are plain dicts. Errors: ``NotFound``
(404: another tenant's job or none), ``Conflict`` (409: cancelling a finished job).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub.bulk import service
from hub.context import CallContext
from hub.db import UnitOfWork


def get(ctx: CallContext, uow: UnitOfWork, job_id: str) -> dict[str, Any]:
    """The GET /v1/bulk/{id} view: ``{id, status, total, valid, invalid, succeeded, failed, pending, amount, …}``."""
    ctx.require_scope("bulk:read")
    return service.job_view(service.get_job(ctx, uow, job_id))


def list_(ctx: CallContext, uow: UnitOfWork, *, status: str | None = None, cursor: str | None = None,
          limit: int = 50) -> tuple[list[dict[str, Any]], str | None]:
    """The tenant's jobs, newest first: ``(views, next_cursor)``."""
    ctx.require_scope("bulk:read")
    jobs, next_cursor = service.list_jobs(ctx, uow, status=status, cursor=cursor, limit=limit)
    return [service.job_view(j) for j in jobs], next_cursor


def items(ctx: CallContext, uow: UnitOfWork, job_id: str, *, status: str | None = None, cursor: int | None = None,
          limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """A job's rows in file order (optionally of one status): ``(items, next_cursor)``."""
    ctx.require_scope("bulk:read")
    return service.list_items(ctx, uow, job_id, status=status, cursor=cursor, limit=limit)


def cancel(ctx: CallContext, uow: UnitOfWork, job_id: str) -> dict[str, Any]:
    """Cancel a job (rows not sent yet are not sent; rows in flight finish). The caller commits."""
    ctx.require_scope("bulk:write")
    return service.job_view(service.cancel_job(ctx, uow, job_id))


def results_csv(ctx: CallContext, uow: UnitOfWork, job_id: str) -> Iterator[str]:
    """The results CSV in pieces: a header, then one line per input row (final status, serial number, error)."""
    ctx.require_scope("bulk:read")
    return service.results_csv(ctx, uow, job_id)
