"""The types hooks receive and return (docs/hooks.md). Plugins may import them for their
own annotations; they cost nothing at run time (plain ``TypedDict``s and a ``Protocol``)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import IO, Any, Protocol, TypedDict


class ProductView(TypedDict, total=False):
    """A product as ``price_product`` sees it (read-only)."""

    code: str  # the hub's product code (what tenants buy)
    name: str
    category: str  # pulsa, data, pln, ewallet, game, bill
    brand: str
    type: str  # prepaid | postpaid
    nominal: int | None
    description: str | None
    currency: str
    active: bool
    #: what the platform price list and the tenant's price rules add to the cost (minor units)
    margin: int


class TransactionView(TypedDict):
    """A transaction as ``transaction_state_changed`` and the events see it (read-only)."""

    id: str
    ref_id: str  # the tenant's own reference
    product_code: str
    customer_no: str
    status: str  # pending | processing | succeeded | failed | review | refunded
    price: int
    currency: str
    wallet_id: str
    inquiry_id: str | None
    serial_number: str | None
    provider_ref: str | None
    provider_code: str | None
    error: str | None
    source: str
    created_at: dt.datetime
    updated_at: dt.datetime
    completed_at: dt.datetime | None


class BulkParser(Protocol):
    """One more input format for bulk jobs (``register_bulk_parsers``)."""

    #: the format's name (a plugin's format with a built-in one's name replaces it)
    name: str
    #: the Content-Types that select this parser
    content_types: list[str]

    def parse(self, stream: IO[bytes]) -> Iterator[dict[str, Any]]:
        """One dict per row: ``ref_id``, ``product_code`` and ``customer_no``; a row it cannot
        read may carry ``error`` instead (an invalid row of the report, not a failed file)."""
        ...
