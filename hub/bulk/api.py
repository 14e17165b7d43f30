"""HTTP of the bulk service (docs/bulk.md)."""
from __future__ import annotations

from flask import Response, current_app, request, stream_with_context
from flask.views import MethodView

from hub.auth import current_ctx, requires
from hub.bulk import service
from hub.bulk.parsers import parser_table
from hub.bulk.schemas import (
    BulkItemArgs,
    BulkItemListSchema,
    BulkJobListSchema,
    BulkJobSchema,
    BulkListArgs,
    BulkSubmitArgs,
)
from hub.edge import Blueprint, body_limit
from hub.errors import ValidationFailed
from hub.state import current_state
from hub.web import request_uow

bp = Blueprint("bulk", __name__, url_prefix="/v1", description="Bulk files of purchases: submit, follow, results")

_UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}, "example": "ref_id,product_code,customer_no\nr1,TEL10,081234567890\n"},
    "application/json": {"schema": {"type": "object", "properties": {"items": {"type": "array", "items": {
        "type": "object", "properties": {"ref_id": {"type": "string"}, "product_code": {"type": "string"},
                                         "customer_no": {"type": "string"}}}}}}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string",
                                                                                  "format": "binary"}}}},
}}}


def parsers() -> dict:
    return parser_table(current_app.extensions["rop"].extras.get("plugins"))


@bp.route("/bulk")
class BulkJobs(MethodView):
    @requires("bulk:read")
    @bp.arguments(BulkListArgs, location="query")
    @bp.response(200, BulkJobListSchema)
    def get(self, args):
        """The tenant's bulk jobs, newest first."""
        jobs, next_cursor = service.list_jobs(current_ctx(), request_uow(), status=args["status"],
                                              cursor=args["cursor"], limit=args["limit"])
        return {"items": [service.job_view(j) for j in jobs], "next_cursor": next_cursor}

    @body_limit("bulk")
    @requires("bulk:write")
    @bp.arguments(BulkSubmitArgs, location="query")
    @bp.response(202, BulkJobSchema)
    @bp.alt_response(200, schema=BulkJobSchema, description="A replay: the same reference, or the same file "
                                                            "without one (the first job)")
    @bp.doc(**_UPLOAD_DOC)
    def post(self, args):
        """Submit a file: a CSV (``ref_id,product_code,customer_no``), ``{"items": [...]}``, or a
        multipart upload (part ``file``). Streamed to disk, never read whole into memory; at most
        ``ROP_MAX_BODY_BULK`` bytes (413), ``ROP_BULK_MAX_ROWS`` rows, 16 columns and 4,096
        characters per record or item (422, before anything is stored).

        202 with the new job (status ``validating``); the same reference, or the same file
        without one, again: 200 with the first job; same reference, other file: 409.
        """
        ctx, uow = current_ctx(), request_uow()
        limits = current_state().config.limits
        bounds = {"max_rows": limits.bulk_max_rows, "max_bytes": limits.body_bulk}
        options = dict(args)
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("file")
            if upload is None:
                raise ValidationFailed("a multipart upload needs the file in a part named 'file'",
                                       errors={"file": ["missing"]})
            for key in service.OPTION_DEFAULTS:
                if options.get(key) is None and request.form.get(key):
                    options[key] = request.form[key]
            job, created = service.submit_stream(ctx, uow, upload.stream, parsers=parsers(),
                                                 content_type=upload.mimetype, file_name=upload.filename,
                                                 options=options, **bounds)
        else:
            job, created = service.submit_stream(ctx, uow, request.stream, parsers=parsers(),
                                                 content_type=request.mimetype, options=options, **bounds)
        uow.commit()
        return service.job_view(job), (202 if created else 200)


@bp.route("/bulk/<job_id>")
class BulkJobOne(MethodView):
    @requires("bulk:read")
    @bp.response(200, BulkJobSchema)
    def get(self, job_id: str):
        """One job and its counts (they move while it runs)."""
        return service.job_view(service.get_job(current_ctx(), request_uow(), job_id))


@bp.route("/bulk/<job_id>/items")
class BulkJobItems(MethodView):
    @requires("bulk:read")
    @bp.arguments(BulkItemArgs, location="query")
    @bp.response(200, BulkItemListSchema)
    def get(self, args, job_id: str):
        """The job's rows in file order; ``?status=invalid`` is the validation report."""
        items, next_cursor = service.list_items(current_ctx(), request_uow(), job_id, status=args["status"],
                                                cursor=args["cursor"], limit=args["limit"])
        return {"items": items, "next_cursor": next_cursor}


@bp.route("/bulk/<job_id>/results.csv")
class BulkJobResults(MethodView):
    @requires("bulk:read")
    @bp.response(200, content_type="text/csv")
    def get(self, job_id: str):
        """One line per input row: ``row,ref_id,product_code,customer_no,status,transaction_id,serial_number,price,error``."""
        lines = service.results_csv(current_ctx(), request_uow(), job_id)
        return Response(stream_with_context(lines), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{job_id}-results.csv"'})


@bp.route("/bulk/<job_id>/cancel")
class BulkJobCancel(MethodView):
    @requires("bulk:write")
    @bp.response(200, BulkJobSchema)
    def post(self, job_id: str):
        """Cancel: rows not sent yet are not sent (status ``cancelled``); rows in flight finish."""
        uow = request_uow()
        job = service.cancel_job(current_ctx(), uow, job_id)
        uow.commit()
        return service.job_view(job)
