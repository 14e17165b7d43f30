"""Use-cases of the bulk service: receive a file, validate it, send its rows, follow them.

The life of a job (docs/bulk.md)::

    POST /v1/bulk ──► validating ──► queued ──► running ──► completed
                          │            │           │
                          └─► rejected └───────────┴──► cancelled

1. :func:`submit_file` (in the HTTP request): the upload has been spooled to a temporary
   file and hashed; the same client reference or the same file again is the same job
   (idempotent); the rows are parsed one by one and inserted in batches. Nothing is
   validated yet: a :class:`~hub.bulk.messages.ValidateBulkJob` command is published.
2. :func:`validate_job` (a worker, in short units of work): rows in batches of
   :data:`BATCH_ROWS` — products and prices through ``products.prices_for`` (one call per
   batch for the codes not seen yet), used ref_ids through ``transactions.used_ref_ids``,
   duplicates in the file by one SQL statement first, the customer number per row. Then the job's policies:
   ``on_invalid`` (``reject`` the file, or ``skip`` the invalid rows) and
   ``on_insufficient_funds`` (``reject`` when the wallet cannot cover the valid rows'
   total, or ``partial``: send rows until it runs out). Then one
   :class:`~hub.bulk.messages.ProcessBulkChunk` per :data:`CHUNK_ROWS` valid rows.
3. :func:`process_chunk` (a worker): each row becomes an ordinary transaction through
   ``transactions.submit_many`` with its own ``ref_id`` and ``source = "bulk:<job>:<row>"``,
   :data:`GROUP_ROWS` rows per unit of work. The item is claimed (``valid`` → ``submitted``,
   a guarded UPDATE) in the same database transaction that creates the transaction, so a
   worker killed mid-chunk leaves every row either sent and recorded, or untouched: a
   re-run sends exactly the untouched ones. A cancel between two rows is seen before the next.
4. :func:`apply_transaction_event` (a subscriber of the transaction events): the item
   follows its transaction; counters move by atomic increments, only when the item's
   status really changed; the last outcome completes the job (``bulk.completed``).
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

import structlog
from sqlalchemy import String, bindparam, cast, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from hub.bulk.messages import (
    BulkCancelled,
    BulkCompleted,
    BulkRejected,
    ProcessBulkChunk,
    ValidateBulkJob,
)
from hub.bulk.models import BulkItem, BulkJob
from hub.bulk.parsers import format_for, parse_rows, scan, spool
from hub.context import CallContext
from hub.db import Database, DriverStatement, UnitOfWork, exact_sum, new_id, unit_of_work, utcnow
from hub.edge import text_problem
from hub.errors import Conflict, HubError, InsufficientFunds, NotFound, ValidationFailed
from hub.scoping import get_owned, tenant_select

log = structlog.get_logger("hub.bulk")

#: rows inserted per statement when a file is received, and validated per unit of work
BATCH_ROWS = 1000
#: valid rows per ProcessBulkChunk command
CHUNK_ROWS = 250
#: rows submitted per unit of work inside a chunk. The group's holds are placed at its commit
#: (the tenant's wallet row is locked for those statements and the COMMIT only), and its
#: ProcessTransaction commands reach the provider workers as one job (processed together,
#: ``hub.transactions.driver.drive``): bigger groups mean fewer commits and jobs, smaller
#: ones less work redone when one row is refused.
GROUP_ROWS = 25
#: the most rows one job may have (the default of ``ROP_BULK_MAX_ROWS``)
MAX_ROWS = 1_000_000

ON_INVALID = ("reject", "skip")
ON_INSUFFICIENT_FUNDS = ("reject", "partial")
#: item statuses that are an outcome for the job (``review`` waits for a person, yet the job is done)
SETTLED = ("succeeded", "failed", "refunded", "review", "cancelled", "skipped")
#: what a transaction event's status makes of an item, and the order outcomes may follow each other
#: (a late event never moves an item back: failed/succeeded after refunded is ignored)
_RANK = {"valid": 0, "submitted": 1, "review": 2, "succeeded": 3, "failed": 3, "refunded": 4}
_FROM_TRANSACTION = {"succeeded": "succeeded", "failed": "failed", "refunded": "refunded", "review": "review"}
#: counters that follow an item's current status (``submitted`` counts rows ever sent: it only grows)
_STATUS_COUNTERS = ("succeeded", "failed", "refunded", "review", "cancelled", "skipped")

RESULT_COLUMNS = ("row", "ref_id", "product_code", "customer_no", "status", "transaction_id", "serial_number",
                  "price", "error")


# -- views -----------------------------------------------------------------------------------
def job_view(job: BulkJob) -> dict[str, Any]:
    """The GET /v1/bulk/{id} view of a job. While it is validating, ``amount`` (the valid
    rows' prices) is not known yet: None, not 0."""
    settled = sum(getattr(job, name) for name in _STATUS_COUNTERS)
    pending = 0 if job.status in ("validating", "rejected") else max(0, job.valid - settled)
    return {
        "id": job.id, "status": job.status, "reference": job.reference, "file_name": job.file_name,
        "format": job.file_format, "file_sha256": job.file_sha256, "on_invalid": job.on_invalid,
        "on_insufficient_funds": job.on_insufficient_funds, "wallet_id": job.wallet_id,
        "total": job.total, "validated": job.validated, "valid": job.valid, "invalid": job.invalid, "submitted": job.submitted,
        "succeeded": job.succeeded, "failed": job.failed, "refunded": job.refunded, "review": job.review,
        "cancelled": job.cancelled, "skipped": job.skipped, "pending": pending,
        "amount": None if job.status == "validating" else job.amount, "amount_succeeded": job.amount_succeeded,
        "currency": job.currency,
        "error": job.error, "created_at": job.created_at, "started_at": job.started_at,
        "completed_at": job.completed_at, "updated_at": job.updated_at,
    }


def item_view(item: BulkItem) -> dict[str, Any]:
    return {"row": item.row, "ref_id": item.ref_id, "product_code": item.product_code,
            "customer_no": item.customer_no, "status": item.status, "price": item.price,
            "transaction_id": item.transaction_id, "serial_number": item.serial_number, "error": item.error}


def _event_payload(job: BulkJob) -> dict[str, Any]:
    view = dict(job_view(job), amount=job.amount)
    return {k: view[k] for k in ("id", "status", "reference", "total", "valid", "invalid", "succeeded", "failed",
                                 "refunded", "review", "cancelled", "skipped", "pending", "amount",
                                 "amount_succeeded", "currency")}


def _emit(ctx: CallContext, uow: UnitOfWork, message) -> None:
    from hub.bus import publish

    publish(ctx, uow, message)


# -- receiving a file ------------------------------------------------------------------------
def submit_file(ctx: CallContext, uow: UnitOfWork, stream: IO[bytes], *, sha256: str, file_format: str,
                parsers: dict[str, Any], file_name: str | None = None, reference: str | None = None,
                on_invalid: str = "reject", on_insufficient_funds: str = "reject",
                wallet_id: str | None = None, max_rows: int = MAX_ROWS) -> tuple[BulkJob, bool]:
    """Create a job from a spooled file (rewound, binary) and queue its validation.

    Idempotent: the same ``reference`` — or, without one, the same file (``sha256``) — with
    the same options returns the first job and ``created=False``.

    :raise Conflict: the reference (or file) was submitted before with another file or other options.
    :raise ValidationFailed: an unreadable file, no rows, too many rows, an unknown policy.
    """
    ctx.require_scope("bulk:write")
    if on_invalid not in ON_INVALID:
        raise ValidationFailed(f"on_invalid must be one of {', '.join(ON_INVALID)}",
                               errors={"on_invalid": ["unknown policy"]})
    if on_insufficient_funds not in ON_INSUFFICIENT_FUNDS:
        raise ValidationFailed(f"on_insufficient_funds must be one of {', '.join(ON_INSUFFICIENT_FUNDS)}",
                               errors={"on_insufficient_funds": ["unknown policy"]})
    if reference is not None and not (0 < len(reference) <= 255):
        raise ValidationFailed("reference must have 1-255 characters", errors={"reference": ["1-255 characters"]})
    idem_key = f"ref:{reference}" if reference else f"sha256:{sha256}"
    options = {"file_sha256": sha256, "on_invalid": on_invalid, "on_insufficient_funds": on_insufficient_funds,
               "wallet_id": wallet_id}
    existing = _find_by_key(ctx, uow, idem_key)
    if existing is not None:
        return _same_or_conflict(existing, options, reference), False
    from hub.auth import service_context

    try:  # known from the start: the wallet (the main one when none is named) and its currency
        wallet = _wallet(service_context(ctx, "bulk"), uow, wallet_id)
    except NotFound:
        raise ValidationFailed(f"no wallet {wallet_id!r} in this tenant",
                               errors={"wallet_id": ["no such wallet"]}) from None
    job = BulkJob(id=new_id("blk"), tenant_id=ctx.tenant_id, client_id=ctx.on_behalf_of or ctx.client_id,
                  idem_key=idem_key, reference=reference, file_format=file_format,
                  file_name=(file_name or None) and file_name[:255], status="validating",
                  **dict(options, wallet_id=wallet["id"]), currency=wallet["currency"])
    try:
        with uow.session.begin_nested():
            uow.session.add(job)
            uow.session.flush()
    except IntegrityError:  # the same submission, concurrently: it won the key
        existing = _find_by_key(ctx, uow, idem_key)
        if existing is None:  # pragma: no cover - the violation was something else
            raise
        return _same_or_conflict(existing, options, reference), False
    total = _insert_items(ctx, uow, job, parse_rows(parsers, file_format, stream), max_rows)
    if total == 0:
        raise ValidationFailed("the file has no rows", errors={"file": ["no rows"]})
    job.total = total
    _emit(ctx, uow, ValidateBulkJob(job_id=job.id))
    log.info("bulk job received", job_id=job.id, rows=total, format=file_format)
    return job, True


#: the options a submission may carry, and their defaults
OPTION_DEFAULTS: dict[str, Any] = {"format": None, "reference": None, "on_invalid": "reject",
                                   "on_insufficient_funds": "reject", "wallet_id": None}


def submit_stream(ctx: CallContext, uow: UnitOfWork, stream: IO[bytes], *, parsers: dict[str, Any],
                  content_type: str | None = None, file_name: str | None = None,
                  options: dict[str, Any] | None = None, max_rows: int = MAX_ROWS,
                  max_bytes: int | None = None) -> tuple[BulkJob, bool]:
    """Spool ``stream`` (bounded memory, hashed), choose its format, :func:`~hub.bulk.parsers.scan`
    it (rows counted, bounds checked: nothing is stored for a file past one), and
    :func:`submit_file` it.

    :param options: ``format``, ``reference``, ``on_invalid``, ``on_insufficient_funds``,
        ``wallet_id`` (None: the default; a JSON body's top-level keys fill what is not given).
    :param max_rows: ``ROP_BULK_MAX_ROWS``. :param max_bytes: the most bytes spooled.
    """
    given = {k: v for k, v in (options or {}).items() if k in OPTION_DEFAULTS and v not in (None, "")}
    spooled = spool(stream, max_bytes=max_bytes)
    try:
        file_format = format_for(parsers, content_type=content_type, file_name=file_name,
                                 requested=given.get("format"))
        total, meta = scan(parsers, file_format, spooled.rewind(), max_rows=max_rows)
        for key, value in meta.items():
            if key in OPTION_DEFAULTS and key != "format" and key not in given and value is not None:
                if not isinstance(value, str):
                    raise ValidationFailed(f"{key} must be a string", errors={key: ["must be a string"]})
                if why := text_problem(value):
                    raise ValidationFailed(f"{key} {why}", errors={key: [why]})
                given[key] = value
        if total == 0:
            raise ValidationFailed("the file has no rows", errors={"file": ["no rows"]})
        chosen = {**OPTION_DEFAULTS, **given}
        return submit_file(ctx, uow, spooled.rewind(), sha256=spooled.sha256, file_format=file_format,
                           parsers=parsers, file_name=file_name, reference=chosen["reference"],
                           on_invalid=chosen["on_invalid"], on_insufficient_funds=chosen["on_insufficient_funds"],
                           wallet_id=chosen["wallet_id"], max_rows=max_rows)
    finally:
        spooled.close()


def _find_by_key(ctx: CallContext, uow: UnitOfWork, idem_key: str) -> BulkJob | None:
    return uow.session.scalars(tenant_select(ctx, BulkJob).where(BulkJob.idem_key == idem_key)).first()


def _same_or_conflict(job: BulkJob, options: dict[str, Any], reference: str | None) -> BulkJob:
    for key, value in options.items():
        if key == "wallet_id" and value is None:
            continue  # no wallet named: the main wallet, which the job names once validated
        if getattr(job, key) != value:
            what = f"the reference {reference!r}" if reference else "this file"
            raise Conflict(f"{what} was already submitted as {job.id} with another "
                           f"{'file' if key == 'file_sha256' else key}", job_id=job.id)
    return job


def _insert_items(ctx: CallContext, uow: UnitOfWork, job: BulkJob, rows: Iterable[dict[str, Any]],
                  max_rows: int = MAX_ROWS) -> int:
    batch: list[dict[str, Any]] = []
    count = 0
    now = utcnow()
    for row in rows:
        count += 1
        if count > max_rows:  # scan() refused such a file already; a file read by submit_file alone is not
            raise ValidationFailed(f"a bulk file may have at most {max_rows} rows", errors={"file": ["too many rows"]})
        batch.append({"job_id": job.id, "tenant_id": ctx.tenant_id, "row": count, "ref_id": row["ref_id"],
                      "product_code": row["product_code"], "customer_no": row["customer_no"],
                      "status": "invalid" if row["error"] else "received", "error": row["error"],
                      "updated_at": now})
        if len(batch) >= BATCH_ROWS:
            uow.session.execute(insert(BulkItem), batch)
            batch = []
    if batch:
        uow.session.execute(insert(BulkItem), batch)
    return count


# -- reading ---------------------------------------------------------------------------------
def get_job(ctx: CallContext, uow: UnitOfWork, job_id: str) -> BulkJob:
    """The job ``job_id`` of the caller's tenant. :raise NotFound: another tenant's or none."""
    return get_owned(uow.session, ctx, BulkJob, job_id)


def list_jobs(ctx: CallContext, uow: UnitOfWork, *, status: str | None = None, cursor: str | None = None,
              limit: int = 50) -> tuple[list[BulkJob], str | None]:
    """The tenant's jobs, newest first, cursor-paginated (the cursor is the last job's id)."""
    stmt = tenant_select(ctx, BulkJob)
    if status:
        stmt = stmt.where(BulkJob.status == status)
    if cursor:
        last = uow.session.scalars(tenant_select(ctx, BulkJob).where(BulkJob.id == cursor)).first()
        if last is None:
            raise ValidationFailed("invalid cursor", errors={"cursor": ["invalid"]})
        stmt = stmt.where((BulkJob.created_at < last.created_at)
                          | ((BulkJob.created_at == last.created_at) & (BulkJob.id < last.id)))
    rows = list(uow.session.scalars(stmt.order_by(BulkJob.created_at.desc(), BulkJob.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def list_items(ctx: CallContext, uow: UnitOfWork, job_id: str, *, status: str | None = None,
               cursor: int | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """A job's items in file order, optionally of one status; the cursor is the last row number."""
    get_job(ctx, uow, job_id)
    stmt = select(BulkItem).where(BulkItem.job_id == job_id, BulkItem.tenant_id == ctx.tenant_id)
    if status:
        stmt = stmt.where(BulkItem.status == status)
    if cursor is not None:
        stmt = stmt.where(BulkItem.row > cursor)
    rows = list(uow.session.scalars(stmt.order_by(BulkItem.row).limit(limit + 1)))
    return [item_view(i) for i in rows[:limit]], (rows[limit - 1].row if len(rows) > limit else None)


def results_csv(ctx: CallContext, uow: UnitOfWork, job_id: str) -> Iterator[str]:
    """The results file, one line per input row, produced page by page (never all in memory).

    :raise NotFound: before anything is produced, when the job is not the tenant's.
    """
    get_job(ctx, uow, job_id)
    return _results_lines(ctx, uow, job_id)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+")


def csv_cell(value: Any) -> Any:
    """A value as it goes into a results CSV, neutralised against spreadsheet formulas.

    A text cell that a spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@``, tab,
    carriage return; OWASP's CSV injection) gets a leading apostrophe; a plain signed number
    such as ``+62812...`` is left alone (a spreadsheet reads it as a number, not a formula).
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _results_lines(ctx: CallContext, uow: UnitOfWork, job_id: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(RESULT_COLUMNS)
    yield take()
    last = 0
    columns = [getattr(BulkItem, c) for c in RESULT_COLUMNS]
    while True:
        page = uow.session.execute(select(*columns).where(BulkItem.job_id == job_id,
                                                          BulkItem.tenant_id == ctx.tenant_id,
                                                          BulkItem.row > last)
                                   .order_by(BulkItem.row).limit(BATCH_ROWS)).all()
        if not page:
            return
        for values in page:
            writer.writerow([csv_cell(v) for v in values])
        last = page[-1][0]
        yield take()


# -- validating ------------------------------------------------------------------------------
def validate_job(ctx: CallContext, db: Database, job_id: str) -> None:
    """Validate a job's rows batch by batch, apply its policies, queue its chunks.

    Runs in its own short units of work and may run again after a crash: rows already
    validated are not looked at again, and the counters are recounted from the rows.
    """
    from hub.auth import service_context

    svc = service_context(ctx, "bulk")
    products: dict[str, dict | None] = {}
    with unit_of_work(db) as uow:
        job = uow.session.get(BulkJob, job_id)
        if job is None or job.tenant_id != ctx.tenant_id or job.status != "validating":
            return
        try:
            wallet = _wallet(svc, uow, job.wallet_id)
        except NotFound:  # named at submission, gone since (submit_file checks it exists)
            _reject(ctx, uow, job, f"the wallet {job.wallet_id} is not the tenant's", ("received", "valid"))
            uow.commit()
            return
        job.wallet_id = wallet["id"]
        job.currency = wallet["currency"]
        uow.commit()
    with unit_of_work(db) as uow:
        if uow.session.scalar(select(BulkJob.status).where(BulkJob.id == job_id)) != "validating":
            return  # cancelled meanwhile
        duplicates = _mark_duplicates(uow, job_id)
        uow.session.execute(update(BulkJob).where(BulkJob.id == job_id)
                            .values(validated=BulkJob.validated + duplicates, updated_at=utcnow()))
        uow.commit()
    last_row = 0
    while True:
        with unit_of_work(db) as uow:
            if uow.session.scalar(select(BulkJob.status).where(BulkJob.id == job_id)) != "validating":
                return  # cancelled meanwhile
            items = list(uow.session.scalars(
                select(BulkItem).where(BulkItem.job_id == job_id, BulkItem.status == "received",
                                       BulkItem.row > last_row).order_by(BulkItem.row).limit(BATCH_ROWS)))
            if not items:
                break
            _validate_batch(svc, uow, items, products, wallet["currency"])
            uow.session.execute(update(BulkJob).where(BulkJob.id == job_id, BulkJob.status == "validating")
                                .values(validated=BulkJob.validated + len(items), updated_at=utcnow()))
            last_row = items[-1].row
            uow.commit()
    with unit_of_work(db) as uow:
        job = uow.session.scalars(select(BulkJob).where(BulkJob.id == job_id).with_for_update()).one()
        if job.status != "validating":
            return
        _recount(uow, job)
        job.validated = job.total  # also after a re-run that did not see the rows validated before
        _apply_policies(ctx, svc, uow, job, wallet)
        uow.commit()


def _wallet(svc: CallContext, uow: UnitOfWork, wallet_id: str | None) -> dict[str, Any]:
    from hub.wallets import client as wallets

    return wallets.get_wallet(svc, uow, wallet_id) if wallet_id else wallets.get_main_wallet(svc, uow)


def _mark_duplicates(uow: UnitOfWork, job_id: str) -> int:
    """Mark invalid every row not yet validated whose ref_id an earlier row of the file has.

    One statement over the whole job, before the batches: the database groups the job's rows
    by ref_id once (the ``(job_id, ref_id)`` index), instead of a look-up per batch, whose plan
    PostgreSQL chose without statistics on a table just filled, scanning the whole job for
    each batch (seconds per batch at 100,000 rows). Returns how many rows it marked; a re-run
    marks none again (only ``received`` rows are looked at).
    """
    first = (select(BulkItem.ref_id.label("ref_id"), func.min(BulkItem.row).label("first_row"))
             .where(BulkItem.job_id == job_id, BulkItem.ref_id.is_not(None))
             .group_by(BulkItem.ref_id).having(func.count() > 1).subquery())
    error = literal("duplicate ref_id: row ") + cast(first.c.first_row, String) + literal(" has the same one")
    return uow.session.execute(
        update(BulkItem)
        .where(BulkItem.job_id == job_id, BulkItem.status == "received", BulkItem.ref_id == first.c.ref_id,
               BulkItem.row > first.c.first_row)
        .values(status="invalid", error=error, price=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount


def _validate_batch(svc: CallContext, uow: UnitOfWork, items: list[BulkItem],
                    products: dict[str, dict | None], currency: str) -> None:
    from hub.products import client as products_client
    from hub.transactions import client as transactions

    unknown = sorted({i.product_code for i in items if i.product_code and i.product_code not in products})
    if unknown:
        found = products_client.prices_for(svc, uow, unknown)
        for code in unknown:
            products[code] = found.get(code)
    refs = sorted({i.ref_id for i in items if i.ref_id})
    used = transactions.used_ref_ids(svc, uow, refs) if refs else set()
    updates = []
    for item in items:  # duplicates in the file were marked before (_mark_duplicates)
        product = products.get(item.product_code or "")
        error = None
        if item.ref_id in used:
            error = "ref_id already used by another transaction"
        elif product is None:
            error = f"unknown product {item.product_code!r}"
        elif not product.get("active", True):
            error = f"product {item.product_code!r} is not available"
        elif product.get("currency") != currency:
            error = f"product {item.product_code!r} is priced in {product.get('currency')}, the wallet in {currency}"
        else:
            error = transactions.validate(svc, uow, item.product_code, item.customer_no, product=product)
        updates.append({"id": item.id, "status": "invalid" if error else "valid", "error": error or None,
                        "price": None if error or product is None else product.get("price")})
    # Only rows still "received": a cancel committed since they were read (it marks them
    # cancelled) must not be overwritten with "valid" (the job's recount would no longer match).
    uow.session.execute(update(BulkItem).where(BulkItem.status == "received")
                        .execution_options(synchronize_session=None), updates)


def _recount(uow: UnitOfWork, job: BulkJob) -> None:
    """Set the job's counters from its rows (after validation; under the job's row lock)."""
    counts = {status: (n, amount or 0) for status, n, amount in uow.session.execute(
        select(BulkItem.status, func.count(), exact_sum(BulkItem.price)).where(BulkItem.job_id == job.id)
        .group_by(BulkItem.status)).all()}
    job.invalid = counts.get("invalid", (0, 0))[0]
    job.valid = sum(n for status, (n, _) in counts.items() if status not in ("invalid", "received"))
    job.amount = sum(a for status, (_, a) in counts.items() if status not in ("invalid", "received"))
    for name in _STATUS_COUNTERS:
        setattr(job, name, counts.get(name, (0, 0))[0])


def _apply_policies(ctx: CallContext, svc: CallContext, uow: UnitOfWork, job: BulkJob, wallet: dict) -> None:
    reason = None
    if job.invalid and job.on_invalid == "reject":
        reason = (f"{job.invalid} of {job.total} rows are invalid (on_invalid=reject): see the items with "
                  f"status=invalid; fix them or resubmit with on_invalid=skip")
    elif job.on_insufficient_funds == "reject":
        fresh = _wallet(svc, uow, job.wallet_id)
        covers = fresh["available"] + fresh.get("overdraft_limit", 0)
        if covers < job.amount:
            reason = (f"the wallet {job.wallet_id} has {fresh['available']} {job.currency} available and the valid "
                      f"rows cost {job.amount} (on_insufficient_funds=reject)")
    if reason is not None:
        _reject(ctx, uow, job, reason)
        return
    job.status = "queued"
    bounds = _chunk_bounds(uow, job.id)
    job.chunks = len(bounds)
    for first_row, last_row in bounds:
        _emit(ctx, uow, ProcessBulkChunk(job_id=job.id, first_row=first_row, last_row=last_row))
    if not bounds:  # nothing valid to send (every row invalid, on_invalid=skip)
        job.status, job.completed_at = "completed", utcnow()
        _emit(ctx, uow, BulkCompleted(**_event_payload(job)))


def _reject(ctx: CallContext, uow: UnitOfWork, job: BulkJob, reason: str, unsent: tuple[str, ...] = ("valid",)) -> None:
    """Reject the job: its ``unsent`` rows become ``skipped``; ``bulk.rejected`` is published."""
    skipped = uow.session.execute(update(BulkItem).where(BulkItem.job_id == job.id, BulkItem.status.in_(unsent))
                                  .values(status="skipped", error="not sent: the file was rejected",
                                          updated_at=utcnow())).rowcount
    job.skipped += skipped
    job.status, job.error, job.completed_at = "rejected", reason, utcnow()
    _emit(ctx, uow, BulkRejected(**_event_payload(job)))


def _chunk_bounds(uow: UnitOfWork, job_id: str) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    first = count = last = 0
    rows = uow.session.execute(select(BulkItem.row).where(BulkItem.job_id == job_id, BulkItem.status == "valid")
                               .order_by(BulkItem.row).execution_options(yield_per=BATCH_ROWS)).scalars()
    for row in rows:
        if count == 0:
            first = row
        count, last = count + 1, row
        if count == CHUNK_ROWS:
            bounds.append((first, last))
            count = 0
    if count:
        bounds.append((first, last))
    return bounds


# -- sending ---------------------------------------------------------------------------------
def process_chunk(ctx: CallContext, db: Database, job_id: str, first_row: int, last_row: int) -> None:
    """Submit the still-unsent valid rows ``first_row..last_row`` of a job, a few per unit of work.

    A row refused at submission (422, 409) fails alone; a 402 stops the job's sending (the
    wallet ran out: the rows not sent are skipped); nothing else stops the rest.
    """
    with unit_of_work(db) as uow:
        job = uow.session.get(BulkJob, job_id)
        if job is None or job.tenant_id != ctx.tenant_id:
            return
        if job.status == "queued":
            uow.session.execute(update(BulkJob).where(BulkJob.id == job_id, BulkJob.status == "queued")
                                .values(status="running", started_at=utcnow(), updated_at=utcnow()))
        items = [(i.id, i.row, i.ref_id, i.product_code, i.customer_no) for i in uow.session.scalars(
            select(BulkItem).where(BulkItem.job_id == job_id, BulkItem.status == "valid",
                                   BulkItem.row.between(first_row, last_row)).order_by(BulkItem.row))]
        uow.commit()
    for start in range(0, len(items), GROUP_ROWS):
        stop = _submit_group(ctx, db, job_id, items[start:start + GROUP_ROWS])
        if stop is not None:
            with unit_of_work(db) as uow:
                _mark_unsent(ctx, uow, job_id, [i[0] for i in items[start:]], *stop)
                uow.commit()
            break
    with unit_of_work(db) as uow:
        _maybe_complete(ctx, uow, job_id)
        uow.commit()


def _submit_group(ctx: CallContext, db: Database, job_id: str, group: list[tuple]) -> tuple[str, str] | None:
    """Submit ``group`` in one unit of work; a refused row is recorded alone and the others are
    submitted again without it. :return: (status, reason) for the unsent rows when the job stops sending."""
    pending = list(group)
    out_of_funds: tuple[str, str] | None = None
    twins = 0  # ref_ids of the group another request took while the group was being written
    while pending:
        with unit_of_work(db) as uow:
            stop = _stopped(uow, job_id, check_funds=out_of_funds is None)
            if stop:
                _mark_unsent(ctx, uow, job_id, [i[0] for i in pending], *stop)
                uow.commit()
                return stop
            holds: dict[str, int] = {}
            failure = _submit_rows(ctx, uow, job_id, pending, holds)
            if failure is None:
                try:
                    uow.commit()  # the group's transactions written, its holds placed (the wallet locked once)
                    return out_of_funds
                except HubError as exc:  # a hold refused at the commit (the funds went meanwhile)
                    index = holds.get(getattr(exc, "transaction_id", ""))
                    if index is None:
                        raise
                    failure = (index, exc)
                except IntegrityError:
                    # a row's ref_id was taken meanwhile by another path (committed: the insert
                    # waited for it): again, where the group's look-up finds it and that row is
                    # met as a replay or a 409 of its own. Each twin takes one of the rows'
                    # ref_ids: more violations than rows are not twins.
                    twins += 1
                    if twins > len(group):
                        raise
                    log.info("bulk group hit a concurrent ref_id; submitting it again", job_id=job_id)
                    uow.rollback()
                    continue
            index, error = failure
            uow.rollback()
        with unit_of_work(db) as uow:
            _record_refusal(ctx, uow, job_id, pending[index], error)
            if isinstance(error, InsufficientFunds):
                # the rows before it fit in the balance: they go; the rest of the group does not
                out_of_funds = ("skipped", "not sent: the wallet ran out (402)")
                _mark_unsent(ctx, uow, job_id, [i[0] for i in pending[index + 1:]], *out_of_funds)
                pending = pending[:index]
            else:
                pending = pending[:index] + pending[index + 1:]
            uow.commit()
    return out_of_funds


def _stopped(uow: UnitOfWork, job_id: str, *, check_funds: bool = True) -> tuple[str, str] | None:
    status, exhausted = uow.session.execute(select(BulkJob.status, BulkJob.funds_exhausted)
                                            .where(BulkJob.id == job_id)).one()
    if status == "cancelled":
        return "cancelled", "not sent: the job was cancelled"
    if exhausted and check_funds:
        return "skipped", "not sent: the wallet ran out (402)"
    return None


_ITEMS = BulkItem.__table__
#: a group's rows claimed by one statement (valid → submitted); RETURNING the ones it got
_CLAIM = (update(_ITEMS).where(_ITEMS.c.id.in_(bindparam("item_ids", expanding=True)), _ITEMS.c.status == "valid")
          .values(status="submitted", updated_at=bindparam("now")).returning(_ITEMS.c.id))
#: each sent row's transaction, in one batch (an executemany)
_SENT = DriverStatement(update(_ITEMS).where(_ITEMS.c.id == bindparam("item_id"))
                        .values(transaction_id=bindparam("trx_id"), updated_at=bindparam("now"),
                                price=func.coalesce(bindparam("trx_price", type_=_ITEMS.c.price.type), _ITEMS.c.price)))


def _submit_rows(ctx: CallContext, uow: UnitOfWork, job_id: str, rows: list[tuple],
                 holds: dict[str, int]) -> tuple[int, HubError] | None:
    """Claim and submit ``rows`` in ``uow``; on a refusal, return (the first refused row's
    index, the error) — the caller rolls ``uow`` back. The holds are placed at the commit:
    ``holds`` maps each new transaction's id to its row's index, for a refusal then.

    The rows are claimed by one statement (a row cancelled or sent meanwhile is skipped),
    submitted together (``transactions.submit_many``: their ``ref_id``s looked up by one
    statement, their transactions written at the commit; a concurrent twin of a ``ref_id``
    then fails the commit with ``IntegrityError``) and their transactions recorded on them by
    one batch."""
    from hub.auth import service_context
    from hub.transactions import client as transactions

    svc = service_context(ctx, "bulk")
    conn = uow.session.connection()
    claimed = set(conn.execute(_CLAIM, {"item_ids": [r[0] for r in rows], "now": utcnow()}).scalars())
    asked = [(index, item_id, transactions.Purchase(ref_id, product_code, customer_no,
                                                    source=f"bulk:{job_id}:{row}", lane="bulk"))
             for index, (item_id, row, ref_id, product_code, customer_no) in enumerate(rows)
             if item_id in claimed]  # the others: cancelled, or sent by an earlier run of this chunk
    answers = transactions.submit_many(svc, uow, [purchase for _, _, purchase in asked]) if asked else []
    sent: list[dict[str, Any]] = []
    for (index, item_id, purchase), answer in zip(asked, answers):
        if isinstance(answer, transactions.Refused):
            return index, answer.error
        view = answer.transaction
        if not answer.created and view.get("source") != purchase.source:
            return index, Conflict(f"ref_id {purchase.ref_id!r} was already used by transaction {view['id']}")
        if answer.created:
            holds[view["id"]] = index
        sent.append({"item_id": item_id, "trx_id": view["id"], "trx_price": view.get("price"), "now": utcnow(),
                     "view": view})
    if sent:
        _SENT.run(uow.session.connection(), [{k: v for k, v in s.items() if k != "view"} for s in sent])
        for one in sent:
            status = _FROM_TRANSACTION.get(one["view"].get("status", ""))
            if status:  # final already (a re-run meeting its own transaction)
                _move_item(ctx, uow, job_id, one["item_id"], "submitted", status, one["view"])
        _add_to_counters(ctx, uow, job_id, {"submitted": len(sent)})
    return None


def _record_refusal(ctx: CallContext, uow: UnitOfWork, job_id: str, row: tuple, error: HubError) -> None:
    item_id = row[0]
    if isinstance(error, InsufficientFunds):
        uow.session.execute(update(BulkJob).where(BulkJob.id == job_id).values(funds_exhausted=True))
        _mark_unsent(ctx, uow, job_id, [item_id], "skipped", f"not sent: insufficient funds ({error.detail})")
        return
    moved = uow.session.execute(update(BulkItem).where(BulkItem.id == item_id, BulkItem.status == "valid")
                                .values(status="failed", error=f"refused: {error.detail}",
                                        updated_at=utcnow())).rowcount
    if moved:
        uow.session.execute(update(BulkJob).where(BulkJob.id == job_id)
                            .values(failed=BulkJob.failed + 1, updated_at=utcnow()))


def _mark_unsent(ctx: CallContext, uow: UnitOfWork, job_id: str, item_ids: list[int], status: str,
                 error: str) -> int:
    if not item_ids:
        return 0
    moved = uow.session.execute(update(BulkItem).where(BulkItem.id.in_(item_ids), BulkItem.status == "valid")
                                .values(status=status, error=error, updated_at=utcnow())).rowcount
    if moved:
        column = getattr(BulkJob, status)
        uow.session.execute(update(BulkJob).where(BulkJob.id == job_id)
                            .values({column: column + moved, "updated_at": utcnow()}))
    return moved


# -- following -------------------------------------------------------------------------------
def bulk_row_of(transaction: dict[str, Any]) -> tuple[str, int] | None:
    """The (job id, row) of a bulk row's transaction (``source = "bulk:<job>:<row>"``), or None."""
    parts = str(transaction.get("source") or "").split(":")
    if len(parts) != 3 or parts[0] != "bulk" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def apply_transaction_event(ctx: CallContext, uow: UnitOfWork, transaction: dict[str, Any]) -> bool:
    """Move the item of a bulk transaction (``source = "bulk:<job>:<row>"``) to its outcome.

    :return: whether anything changed (a duplicate or out-of-order event changes nothing).
    """
    found = bulk_row_of(transaction)
    if found is None:
        return False
    job_id, row = found
    new_status = _FROM_TRANSACTION.get(transaction.get("status", ""))
    if new_status is None:
        return False
    item = uow.session.execute(select(BulkItem.id, BulkItem.status, BulkItem.transaction_id).where(
        BulkItem.job_id == job_id, BulkItem.row == row, BulkItem.tenant_id == ctx.tenant_id)).first()
    if item is None or item.transaction_id != transaction.get("id"):
        return False  # not this row's transaction (the row records it in the same commit that made it)
    if _RANK.get(new_status, 0) <= _RANK.get(item.status, 99):
        return False
    return _move_item(ctx, uow, job_id, item.id, item.status, new_status, transaction, complete=True)


def _move_item(ctx: CallContext, uow: UnitOfWork, job_id: str, item_id: int, old: str, new: str,
               transaction: dict[str, Any], *, complete: bool = False) -> bool:
    """``old`` → ``new`` for one item and the job's counters, if the item is still ``old``.

    :param complete: see whether the job is complete, once its counters have moved.
    """
    values: dict[str, Any] = {"status": new, "updated_at": utcnow()}
    if transaction.get("serial_number"):
        values["serial_number"] = transaction["serial_number"]
    if new in ("failed", "review", "refunded"):
        values["error"] = transaction.get("error") or None
    moved = uow.session.execute(update(BulkItem).where(BulkItem.id == item_id, BulkItem.status == old)
                                .values(**values)).rowcount
    if not moved:
        return False
    price = transaction.get("price") or 0
    changes: dict[str, int] = {new: 1}
    if old in _STATUS_COUNTERS:
        changes[old] = -1
    if new == "succeeded":
        changes["amount_succeeded"] = price
    elif old == "succeeded":
        changes["amount_succeeded"] = -price
    _add_to_counters(ctx, uow, job_id, changes, complete=complete)
    return True


def _add_to_counters(ctx: CallContext, uow: UnitOfWork, job_id: str, changes: dict[str, int], *,
                     complete: bool = False) -> None:
    """Move the job's counters by ``changes`` when ``uow`` commits: one UPDATE per job and unit
    of work, last (``before_commit``). The job's row is locked by that UPDATE until the commit,
    and every chunk and every outcome of the job writes it: taken last, it is held for the
    commit only, however many rows the unit of work moved (a batch of outcomes, a group of
    sent rows). A rollback forgets the changes with the rest."""
    def apply(moves: list[tuple[dict[str, int], bool]]) -> None:
        totals: dict[str, int] = {}
        for one, _ in moves:
            for name, delta in one.items():
                totals[name] = totals.get(name, 0) + delta
        if any(totals.values()):
            values: dict[Any, Any] = {BulkJob.updated_at: utcnow()}
            for name, delta in totals.items():
                if delta:
                    column = getattr(BulkJob, name)
                    values[column] = column + delta
            uow.session.execute(update(BulkJob).where(BulkJob.id == job_id).values(values))
        if any(wants for _, wants in moves):
            _maybe_complete(ctx, uow, job_id)

    uow.before_commit_batch(("bulk.counters", job_id), (changes, complete), apply)


def _maybe_complete(ctx: CallContext, uow: UnitOfWork, job_id: str) -> bool:
    """Complete a running job whose valid rows are all settled (exactly once: a guarded UPDATE).

    The read is enough to decide: every counter move UPDATEs the job row first, so of two
    concurrent last moves the second waits for the first's commit and then sees both.
    """
    counters = [getattr(BulkJob, name) for name in _STATUS_COUNTERS]
    row = uow.session.execute(select(BulkJob.status, BulkJob.valid, BulkJob.completed_at, *counters)
                              .where(BulkJob.id == job_id)).one()
    if sum(row[3:]) < row.valid:
        return False
    now = utcnow()
    if row.status == "cancelled" and row.completed_at is None:  # its rows in flight are done: note when
        uow.session.execute(update(BulkJob).where(BulkJob.id == job_id, BulkJob.completed_at.is_(None))
                            .values(completed_at=now))
        return False
    if row.status not in ("running", "queued"):
        return False
    done = uow.session.execute(update(BulkJob).where(BulkJob.id == job_id, BulkJob.status.in_(("running", "queued")))
                               .values(status="completed", completed_at=now, updated_at=now)).rowcount
    if not done:
        return False
    job = uow.session.get(BulkJob, job_id, populate_existing=True)
    _emit(ctx, uow, BulkCompleted(**_event_payload(job)))
    log.info("bulk job completed", job_id=job_id, succeeded=job.succeeded, failed=job.failed)
    return True


# -- cancelling ------------------------------------------------------------------------------
def cancel_job(ctx: CallContext, uow: UnitOfWork, job_id: str) -> BulkJob:
    """Stop sending a job's rows: rows not sent yet become ``cancelled``; rows in flight finish.

    Idempotent (cancelling a cancelled job returns it).

    :raise Conflict: when the job is already completed or rejected.
    :raise NotFound: another tenant's job, or none.
    """
    ctx.require_scope("bulk:write")
    job = get_owned(uow.session, ctx, BulkJob, job_id, for_update=True)
    uow.session.refresh(job)
    if job.status == "cancelled":
        return job
    if job.status in ("completed", "rejected"):
        raise Conflict(f"bulk job {job_id} is {job.status}; there is nothing left to cancel")
    was_validating = job.status == "validating"
    uow.session.execute(update(BulkItem).where(BulkItem.job_id == job_id,
                                               BulkItem.status.in_(("valid", "received")))
                        .values(status="cancelled", error="not sent: the job was cancelled", updated_at=utcnow()))
    job.status = "cancelled"
    _recount(uow, job)
    if was_validating:
        # validation stops half-way: every row not found invalid so far counts as valid, and cancelled
        job.valid = job.cancelled
    settled = sum(getattr(job, name) for name in _STATUS_COUNTERS)
    if settled >= job.valid:
        job.completed_at = utcnow()
    _emit(ctx, uow, BulkCancelled(**_event_payload(job)))
    log.info("bulk job cancelled", job_id=job_id, cancelled=job.cancelled)
    return job
