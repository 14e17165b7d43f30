"""Numbered pages with a total, for the operators' lists (the admin UI): each service builds
its own conditions over its own table and calls :func:`offset_page`.

The total is exact up to :data:`EXACT_COUNT_UP_TO` rows; above, on PostgreSQL, it is the
planner's estimate (``estimated`` true), so a page of a very large list costs no full count.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from hub.errors import ValidationFailed

#: Counted exactly up to this many rows; above, PostgreSQL's planner estimates the total.
EXACT_COUNT_UP_TO = 10_000


def matching(model, **values: Any) -> list:
    """``model.<name> == value`` for each value given (None and empty ones are no filter)."""
    return [getattr(model, name) == value for name, value in values.items() if value not in (None, "")]


def check_page(page: Any, per_page: Any) -> tuple[int, int]:
    """``(page, per_page)`` as integers (per_page within 1–500). :raise ValidationFailed: a page below 1."""
    try:
        page = int(page)
    except (TypeError, ValueError):
        page = 0
    if page < 1:
        raise ValidationFailed("page must be a whole number from 1", errors={"page": ["invalid"]})
    return page, max(1, min(int(per_page), 500))


def sort_order(sort: str | None, columns: dict[str, Any], default: str) -> tuple[str, bool]:
    """``(key, descending)`` of a ``sort`` argument (``-key``: descending) among ``columns``.

    :raise ValidationFailed: an unknown key.
    """
    sort = sort or default
    key = sort.lstrip("-")
    if key not in columns:
        raise ValidationFailed(f"sort must be one of {', '.join(columns)} (- first: descending)",
                               errors={"sort": ["unknown"]})
    return key, sort.startswith("-")


def offset_page(uow, model, conditions: list, *, sort_column, tiebreak, descending: bool, page: int,
                per_page: int, few_first: bool = False) -> dict[str, Any]:
    """One page of ``model`` rows matching ``conditions``, ordered by ``sort_column`` then
    ``tiebreak``, and the total.

    :param few_first: the conditions are a search whose matches are best found through their
        own indexes: when they match at most :data:`EXACT_COUNT_UP_TO` rows, sort them
        instead of walking the sort column's index (``coalesce(x, x)`` keeps the order, not
        the index), which a LIMIT tempts the planner to do, reading every row newer than them.
    :return: ``{"rows", "total", "estimated", "page", "pages", "per_page"}``.
    """
    capped = select(tiebreak).where(*conditions).limit(EXACT_COUNT_UP_TO + 1).subquery()
    total, estimated = uow.session.scalar(select(func.count()).select_from(capped)), False
    if total > EXACT_COUNT_UP_TO:
        estimate = _planner_estimate(uow, select(tiebreak).where(*conditions))
        if estimate is None:
            total = uow.session.scalar(select(func.count()).select_from(model).where(*conditions))
        else:
            total, estimated = max(estimate, EXACT_COUNT_UP_TO + 1), True
    if few_first and total <= EXACT_COUNT_UP_TO:
        sort_column = func.coalesce(sort_column, sort_column)
    order = [c.desc() if descending else c.asc() for c in (sort_column, tiebreak)]
    rows = list(uow.session.scalars(select(model).where(*conditions).order_by(*order)
                                    .offset((page - 1) * per_page).limit(per_page)))
    return {"rows": rows, "total": total, "estimated": estimated, "page": page,
            "pages": max(1, -(-total // per_page)), "per_page": per_page}


def sorted_page(uow, model, conditions: list, *, columns: dict[str, Any], sort: str | None, default: str,
                page: Any, per_page: Any, few_first: bool = False) -> dict[str, Any]:
    """:func:`offset_page` for a ``sort`` argument among ``columns`` (ties by the model's
    ``id``), the page arguments checked; the result also has the ``sort`` applied.

    :raise ValidationFailed: an unknown sort, a page below 1.
    """
    key, descending = sort_order(sort, columns, default)
    page, per_page = check_page(page, per_page)
    result = offset_page(uow, model, conditions, sort_column=columns[key], tiebreak=model.id,
                         descending=descending, page=page, per_page=per_page, few_first=few_first)
    return dict(result, sort=f"{'-' if descending else ''}{key}")


def _planner_estimate(uow, stmt) -> int | None:
    """PostgreSQL's planner's estimate of the rows ``stmt`` returns (None elsewhere)."""
    bind = uow.session.get_bind()
    if bind.dialect.name != "postgresql":
        return None
    compiled = stmt.compile(dialect=bind.dialect)
    plan = uow.session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
