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


def operator_page(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None = None, status: str | None = None,
                  q: str | None = None, sort: str = "-created", page: int = 1, per_page: int = 50) -> dict[str, Any]:
    """Operator (scope ``*``): one page of the jobs of one tenant or of all, with the total.

    :param q: a job id (exact), or a prefix of the file name or of the job's reference.
    :param sort: ``created``, ``status``, ``total`` or ``file`` (``-`` first: descending).
    :return: ``{"items" (job views with ``tenant_id``), "total", "estimated", "page", "pages",
        "per_page", "sort"}``.
    """
    from sqlalchemy import or_

    from hub.bulk.models import BulkJob
    from hub.paging import matching, sorted_page

    ctx.require_scope("*")
    conditions = matching(BulkJob, tenant_id=tenant_id, status=status)
    q = (q or "").strip()
    if q:
        conditions.append(or_(BulkJob.id == q, BulkJob.file_name.startswith(q, autoescape=True),
                              BulkJob.reference.startswith(q, autoescape=True)))
    columns = {"created": BulkJob.created_at, "status": BulkJob.status, "total": BulkJob.total,
               "file": BulkJob.file_name}
    result = sorted_page(uow, BulkJob, conditions, columns=columns, sort=sort, default="-created", page=page,
                         per_page=per_page)
    return dict(result, items=[dict(service.job_view(j), tenant_id=j.tenant_id) for j in result.pop("rows")])
