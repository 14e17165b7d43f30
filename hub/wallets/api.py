"""HTTP of the wallets service (docs/wallets.md)."""
from __future__ import annotations

from http import HTTPStatus

from flask.views import MethodView

from hub.auth import ON_BEHALF_HEADER, current_ctx, requires
from hub.edge import Blueprint
from hub.errors import ValidationFailed
from hub.wallets import accounts
from hub.wallets.client import wallet_view
from hub.wallets.schemas import (
    CursorArgs,
    EntryListSchema,
    JournalResultSchema,
    TopupSchema,
    TransferSchema,
    WalletCreateSchema,
    WalletListSchema,
    WalletSchema,
)
from hub.web import request_uow

bp = Blueprint("wallets", __name__, url_prefix="/v1", description="Wallets, statements, top-ups and transfers")


def _view(wallet) -> dict:
    return dict(wallet_view(wallet), created_at=wallet.created_at)


@bp.route("/wallets")
class Wallets(MethodView):
    @requires("wallets:read")
    @bp.arguments(CursorArgs, location="query")
    @bp.response(200, WalletListSchema)
    def get(self, args):
        """The tenant's wallets (the main wallet is created on first access)."""
        uow = request_uow()
        rows, next_cursor = accounts.list_wallets(current_ctx(), uow, cursor=args["cursor"], limit=args["limit"])
        uow.commit()  # the lazily created main wallet
        return {"items": [_view(w) for w in rows], "next_cursor": next_cursor}

    @requires("wallets:write")
    @bp.arguments(WalletCreateSchema)
    @bp.response(201, WalletSchema)
    def post(self, body):
        """Create a sub-wallet for one of the tenant's customers (``owner_ref``)."""
        uow = request_uow()
        wallet = accounts.create_wallet(current_ctx(), uow, body["owner_ref"], currency=body["currency"])
        uow.commit()
        return _view(wallet)


@bp.route("/wallets/<wallet_id>")
class WalletOne(MethodView):
    @requires("wallets:read")
    @bp.response(200, WalletSchema)
    def get(self, wallet_id: str):
        """One wallet: ``{id, owner_ref, currency, available, held}``."""
        return _view(accounts.get_wallet(current_ctx(), request_uow(), wallet_id))


@bp.route("/wallets/<wallet_id>/entries")
class WalletEntries(MethodView):
    @requires("wallets:read")
    @bp.arguments(CursorArgs, location="query")
    @bp.response(200, EntryListSchema)
    def get(self, args, wallet_id: str):
        """The statement: entries oldest first with the running balance, cursor-paginated."""
        cursor = args["cursor"]
        if cursor is not None and not cursor.isdigit():
            raise ValidationFailed("invalid cursor", errors={"cursor": ["invalid"]})
        items, next_cursor = accounts.statement(current_ctx(), request_uow(), wallet_id,
                                                cursor=int(cursor) if cursor else None, limit=args["limit"])
        return {"items": items, "next_cursor": str(next_cursor) if next_cursor is not None else None}


@bp.route("/wallets/<wallet_id>/topups")
class WalletTopups(MethodView):
    @requires("wallets:topup")
    @bp.arguments(TopupSchema)
    @bp.response(201, JournalResultSchema)
    @bp.doc(parameters=[{
        "name": ON_BEHALF_HEADER, "in": "header", "required": True, "schema": {"type": "string"},
        "description": "the tenant (slug or id) the platform client records this top-up for"}])
    def post(self, body, wallet_id: str):
        """Record money the platform received for a tenant (a bank transfer); idempotent by ``ref_id``.

        Only the platform may: a **platform client** (scope ``wallets:topup``, created with
        ``rop clients create --platform``) naming the tenant in the ``ROP-On-Behalf-Of``
        header, or the operator (admin UI, ``rop wallets topup``). A tenant's own client
        gets 403 whatever its scopes; a wallet of another tenant than the one named is 404.
        Every top-up is written to the audit log with the platform client and the tenant.
        ``amount`` is at most the tenant's limit per top-up (``ROP_AMOUNT_LIMIT_TOPUP`` /
        ``ROP_AMOUNT_LIMIT``, 1,000,000,000 by default, or the tenant's own): above it, 422
        naming the limit (``limit``, ``limit_source``, ``amount``).
        """
        uow = request_uow()
        result = accounts.topup(current_ctx(), uow, wallet_id, body["amount"], body["ref_id"], reason=body["reason"])
        uow.commit()
        return result


@bp.route("/transfers")
class Transfers(MethodView):
    @requires("wallets:write")
    @bp.arguments(TransferSchema)
    @bp.doc(responses={402: HTTPStatus(402).name})
    @bp.response(201, JournalResultSchema)
    def post(self, body):
        """Move funds between two of the tenant's wallets; idempotent by ``ref_id``; 402 if short;
        422 above the tenant's limit per transfer (``ROP_AMOUNT_LIMIT_TRANSFER``)."""
        uow = request_uow()
        result = accounts.transfer(current_ctx(), uow, body["from_wallet_id"], body["to_wallet_id"],
                                   body["amount"], body["ref_id"])
        uow.commit()
        return result
