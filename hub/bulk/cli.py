"""``rop bulk``: submit a file (and follow it with a progress bar), status, cancel, results."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from hub.cli.base import CliError, app_context, main_group, tenant_context
from hub.context import CallContext
from hub.db import unit_of_work

#: statuses after which nothing moves any more (a cancelled job: once its rows in flight are done)
FINAL = ("completed", "rejected")


def _settled(view: dict) -> int:
    return sum(view[k] for k in ("succeeded", "failed", "refunded", "review", "cancelled", "skipped"))


def _summary(view: dict) -> str:
    return (f"{view['id']} {view['status']}: {view['total']} rows, {view['valid']} valid, {view['invalid']} invalid; "
            f"{view['succeeded']} succeeded, {view['failed']} failed, {view['refunded']} refunded, "
            f"{view['review']} in review, {view['cancelled']} cancelled, {view['skipped']} skipped, "
            f"{view['pending']} pending; " + (f"{view['amount_succeeded']} of {view['amount']} {view['currency'] or ''}"
                                              if view["amount"] is not None else "amount known once validated"))


def _done(view: dict) -> bool:
    return view["status"] in FINAL or (view["status"] == "cancelled" and view["completed_at"] is not None)


def follow(app, ctx: CallContext, job_id: str, *, interval: float = 1.0, timeout: float | None = None,
           stream=None) -> dict:
    """Poll the job until nothing moves any more, with tqdm progress bars (rows validated, then
    rows settled; each with its rate and ETA).

    :return: the last view.
    """
    from tqdm import tqdm

    from hub.bulk import service

    stream = stream or sys.stderr
    db = app.extensions["rop"].db
    bar = checking = None
    started = time.monotonic()
    try:
        while True:
            with unit_of_work(db, readonly=True) as uow:
                view = service.job_view(service.get_job(ctx, uow, job_id))
            if view["status"] == "validating":
                if checking is None:
                    checking = tqdm(total=view["total"], unit="row", desc=f"{job_id} validating", file=stream,
                                    dynamic_ncols=True, smoothing=0.1, mininterval=0.5)
                checking.update(view["validated"] - checking.n)
            elif view["status"] != "rejected":
                if checking is not None:
                    checking.update(view["total"] - checking.n)
                    checking.close()
                    checking = None
                if bar is None:
                    bar = tqdm(total=view["valid"], unit="row", desc=job_id, file=stream, dynamic_ncols=True,
                               smoothing=0.1, mininterval=0.5)
                bar.total = view["valid"]
                # The counts first, then the bar, then one redraw: a frame shows one poll's figures
                # (set after the update, the counts lagged the bar by a poll).
                bar.set_postfix(ok=view["succeeded"], failed=view["failed"], review=view["review"], refresh=False)
                bar.update(_settled(view) - bar.n)
                bar.refresh()
            if _done(view):
                return view
            if timeout is not None and time.monotonic() - started > timeout:
                raise CliError(f"{job_id} is still {view['status']} after {timeout:g} s")
            time.sleep(interval)
    finally:
        for shown in (checking, bar):
            if shown is not None:
                shown.close()


@main_group.group()
def bulk() -> None:
    """Bulk files of purchases: submit, follow, cancel, results."""


@bulk.command("submit", short_help="Submit a CSV or JSON file of purchases.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.option("--follow", "follow_job", is_flag=True, help="Show a progress bar until the job is done.")
@click.option("--reference", help="Your bulk reference (idempotency); default: the file's SHA-256.")
@click.option("--on-invalid", type=click.Choice(["reject", "skip"]), default="reject", show_default=True,
              help="reject: any invalid row rejects the file; skip: process the valid rows.")
@click.option("--on-insufficient-funds", type=click.Choice(["reject", "partial"]), default="reject",
              show_default=True, help="reject: the wallet must cover every valid row; partial: until it runs out.")
@click.option("--wallet", "wallet_id", help="The wallet to pay from (default: the tenant's main wallet).")
@click.option("--format", "file_format", help="csv, json or a plugin's format (default: by the file's name).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def bulk_submit(file: Path, tenant_slug: str, follow_job: bool, reference: str | None, on_invalid: str,
                on_insufficient_funds: str, wallet_id: str | None, file_format: str | None, as_json: bool) -> None:
    """Submit FILE (CSV ref_id,product_code,customer_no, or JSON {"items": [...]}) for a tenant."""
    from hub.bulk import service
    from hub.bulk.parsers import parser_table

    with app_context() as app:
        db = app.extensions["rop"].db
        with unit_of_work(db) as uow, file.open("rb") as stream:
            ctx = tenant_context(uow, tenant_slug)
            parsers = parser_table(app.extensions["rop"].extras.get("plugins"))
            job, created = service.submit_stream(ctx, uow, stream, parsers=parsers, file_name=file.name, options={
                "format": file_format, "reference": reference, "on_invalid": on_invalid,
                "on_insufficient_funds": on_insufficient_funds, "wallet_id": wallet_id},
                max_rows=app.extensions["rop"].config.limits.bulk_max_rows)
            view = service.job_view(job)
            uow.commit()
        if not as_json:
            note = "" if created else " (already submitted: this is the first job)"
            click.echo(f"submitted {view['id']}: {view['total']} rows, {view['status']}{note}")
        if follow_job:
            view = follow(app, ctx, view["id"])
    if as_json:
        click.echo(json.dumps(view, default=str))
    elif follow_job:
        click.echo(_summary(view))
    if view["status"] == "rejected":
        raise CliError(f"{view['id']} rejected: {view['error']}")


@bulk.command("status")
@click.argument("job_id")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.option("--follow", "follow_job", is_flag=True, help="Show a progress bar until the job is done.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bulk_status(job_id: str, tenant_slug: str, follow_job: bool, as_json: bool) -> None:
    """Show a job's counts."""
    from hub.bulk import service

    with app_context() as app:
        with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
            ctx = tenant_context(uow, tenant_slug)
            view = service.job_view(service.get_job(ctx, uow, job_id))
        if follow_job:
            view = follow(app, ctx, job_id)
    click.echo(json.dumps(view, default=str) if as_json else _summary(view))


@bulk.command("cancel", short_help="Cancel a job: rows not sent yet are not sent.")
@click.argument("job_id")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
def bulk_cancel(job_id: str, tenant_slug: str) -> None:
    """Cancel a job: rows not sent yet are not sent; rows in flight finish."""
    from hub.bulk import service

    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        ctx = tenant_context(uow, tenant_slug)
        view = service.job_view(service.cancel_job(ctx, uow, job_id))
        uow.commit()
    click.echo(f"cancelled {job_id}: {view['cancelled']} rows will not be sent, {view['pending']} in flight")


@bulk.command("results", short_help="Write the results CSV (one line per row).")
@click.argument("job_id")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug or id.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file (default: stdout).")
def bulk_results(job_id: str, tenant_slug: str, output: Path | None) -> None:
    """Write the results CSV: one line per input row with its final status, serial number and error."""
    from hub.bulk import service

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        ctx = tenant_context(uow, tenant_slug)
        lines = service.results_csv(ctx, uow, job_id)
        if output is None:
            for piece in lines:
                click.echo(piece, nl=False)
        else:
            with output.open("w", encoding="utf-8", newline="") as target:
                for piece in lines:
                    target.write(piece)
