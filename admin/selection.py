"""Actions on the rows ticked in a list (transactions, approvals, bulk jobs).

The list's form posts the ticked ``ids``; the first POST answers a confirmation page (the
count, the rows, their total, and the rows that are not eligible with why); only its Confirm
(``confirm=1``) acts. Each row is acted on once, through the same use-case as the single
action (so it is audited the same way), in a savepoint of its own: a row refused then (it
changed since, or the four-eyes rule) is reported and rolled back, the others go on.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import flash, request, url_for
from rop_admin.formatting import money
from rop_admin.security import safe_admin_target

from hub.errors import HubError


def selected_ids(noun: str, verb: str) -> list[str] | None:
    """The ticked ids, each once, in the page's order; None (and a message) when none is ticked."""
    ids = list(dict.fromkeys(i.strip() for i in request.form.getlist("ids") if i.strip()))
    if not ids:
        flash(f"Nothing selected: tick the {noun} to {verb} first.", "warning")
    return ids or None


def back(endpoint: str = ".index") -> str:
    """Where the list was (its filters kept): the form's ``back``, else the list."""
    return safe_admin_target(request.form.get("back")) or url_for(endpoint)


def total(rows: Iterable[tuple[int, str]]) -> str:
    """The sum of ``(amount, currency)`` pairs, per currency (``IDR 20,400 + USD 3``)."""
    sums: dict[str, int] = {}
    for amount, currency in rows:
        sums[currency] = sums.get(currency, 0) + amount
    return " + ".join(money(amount, currency) for currency, amount in sorted(sums.items())) or "0"


def refusals(refused: list[tuple[str, str]]) -> str:
    """``id (why); id (why)``."""
    return "; ".join(f"{row_id} ({why})" for row_id, why in refused)


def each(uow, ids: list[str], act: Callable[[str], Any]) -> tuple[list[Any], list[tuple[str, str]]]:
    """``act`` on every id in its own savepoint: ``(results, [(id, why refused)])``."""
    done, refused = [], []
    for row_id in ids:
        try:
            with uow.session.begin_nested():
                done.append(act(row_id))
        except HubError as exc:
            refused.append((row_id, str(getattr(exc, "detail", None) or exc)))
    return done, refused


def report(done: str, refused: list[tuple[str, str]], verb: str) -> None:
    """Flash what was done and, apart, every row that was not (and why)."""
    flash(done, "success")
    if refused:
        flash(f"Not {verb} ({len(refused)}): {refusals(refused)}.", "warning")
