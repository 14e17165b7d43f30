"""The admin's lists: sortable column headers, previous/next with totals, links that keep
the page's filters (every list page uses these, with the ``rop_admin/_lists.html`` macros)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import request


def query_url(**changes: Any) -> str:
    """This page's URL with ``changes`` applied to its query (empty values dropped)."""
    args = {k: v for k, v in request.args.items()}
    args.update({k: v for k, v in changes.items()})
    kept = {k: v for k, v in args.items() if v not in (None, "")}
    return request.path + ("?" + urlencode(kept) if kept else "")


def sort_headers(columns, current: str) -> list[dict[str, Any]]:
    """``(label, key)`` columns as headers: a sortable one links to this page sorted by it
    (descending first; again: ascending) and shows the current direction."""
    key, descending = current.lstrip("-"), current.startswith("-")
    out = []
    for label, col in columns:
        if col is None:
            out.append({"label": label, "url": None, "arrow": "", "key": None})
            continue
        if col == key:
            target, arrow = (col if descending else f"-{col}"), ("▼" if descending else "▲")
        else:
            target, arrow = f"-{col}", ""
        out.append({"label": label, "url": query_url(sort=target, page=None), "arrow": arrow, "key": col,
                    "aria": ("descending" if descending else "ascending") if arrow else "none"})
    return out


def pager(result: dict[str, Any], noun: str) -> dict[str, Any]:
    """``page 3 of 26, 2,534 transactions`` with the previous and next pages' URLs; an estimated
    total says ``about`` and ``(estimate)``."""
    page, pages, total = result["page"], result["pages"], result["total"]
    about = "about " if result.get("estimated") else ""
    text = f"page {page:,} of {about}{pages:,}, {about}{total:,} {noun if total != 1 else noun.rstrip('s')}"
    if result.get("estimated"):
        text += " (estimate)"
    return {"text": text, "prev_url": query_url(page=page - 1) if page > 1 else None,
            "next_url": query_url(page=page + 1) if page < pages else None}


def page_number() -> int:
    """The ``page`` query argument (1 when absent); a malformed one is page 0, which the
    services refuse with a clear message."""
    raw = (request.args.get("page") or "1").strip()
    return int(raw) if raw.isdigit() else 0
