"""The ledger's one write primitive, :func:`post`, and what every posting shares.

Every money operation of the wallets service — a top-up, an adjustment, a transfer
(:mod:`hub.wallets.accounts`), a hold, a capture, a void, a reversal, and the batches of
holds and captures (:mod:`hub.wallets.holds`) — is written by :func:`post`: one or more
:class:`Posting` s, each a journal whose :class:`Leg` s sum to zero. For each posting it

1. inserts the journal first, as ``INSERT … ON CONFLICT (tenant_id, kind, idem_key) DO
   NOTHING``: when a concurrent first attempt with the same key committed between the
   caller's look-up (:func:`replay`) and here, nothing is written and that attempt's stored
   result is the answer (or 409 for another body) — no savepoint needed;
2. lets the caller write what belongs with the written journals before the wallet row is
   locked (``then``: a hold's row or new state, the events that carry no balance);
3. moves each wallet's cached balances by the legs' sum: a wallet the transaction locked
   already (an ORM :class:`~hub.wallets.models.Wallet` from
   :func:`hub.wallets.accounts.lock_wallets`) on the object, which the unit of work's flush
   writes (its balances are known: no statement now); a :class:`WalletSnapshot` (read
   without a lock) by one ``UPDATE … RETURNING`` — which locks the row, last, until the
   commit — optionally only when the funds still cover it (``guarded``: a hold's
   reservation);
4. inserts every entry in one batch, each wallet entry with its account's balance right
   after its posting, as if the postings were made one after the other in their order.

Journals, entries and balance moves are Core statements sent through the driver's cursor
(:class:`hub.db.DriverStatement`): no ORM unit of work, no SQLAlchemy execution layer.
Nothing commits here: the caller commits the unit of work once.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hub.context import CallContext
from hub.db import DriverStatement, UnitOfWork, new_id, utcnow
from hub.errors import Conflict, Forbidden, InsufficientFunds, ValidationFailed
from hub.wallets.models import Entry, Hold, Journal, Wallet

DEFAULT_CURRENCY = "IDR"
FUNDING = "sys:funding:{}"
SETTLEMENT = "sys:settlement:{}"
#: the counter-account of an operator's manual correction (apart from funding, for the books)
ADJUSTMENTS = "sys:adjustments:{}"
SIDES = ("available", "held")


# -- what a posting is made of ----------------------------------------------------------------
@dataclass(slots=True)
class WalletSnapshot:
    """A wallet row's balances as read without a lock (no ORM object), or as a posting left
    them (:attr:`Posting.after`): a figure of a moment, not a live row."""

    id: str
    currency: str
    available: int
    held: int
    overdraft_limit: int


class Leg(NamedTuple):
    """One entry of a posting: ``amount`` (signed) on ``account``. A wallet's leg names the
    wallet and its side (``available`` or ``held``, whose cached balance it moves); a system
    account's leg has neither (its balance is not cached)."""

    account: str
    amount: int
    wallet: Wallet | WalletSnapshot | None = None
    side: str | None = None


def account(wallet_id: str, side: str) -> str:
    return f"{wallet_id}:{side}"


def wallet_leg(wallet: Wallet | WalletSnapshot, side: str, amount: int) -> Leg:
    return Leg(account(wallet.id, side), amount, wallet, side)


def system_leg(template: str, currency: str, amount: int) -> Leg:
    """A leg on a tenant's system account (:data:`FUNDING`, :data:`SETTLEMENT`, :data:`ADJUSTMENTS`)."""
    return Leg(template.format(currency), amount)


@dataclass(eq=False, slots=True)
class Posting:
    """One journal to write: its kind, idempotency key and request fingerprint, its legs (which
    sum to zero, in one currency), the result it stores (what a replay of the key answers) and
    its meta. :func:`post` fills in :attr:`answer` and, for a posting it wrote, :attr:`after`."""

    kind: str
    key: str | None
    fp: str | None
    currency: str
    legs: list[Leg]
    result: dict[str, Any]
    meta: dict[str, Any] | None = None
    #: the stored result plus ``journal_id`` and ``replayed`` (the first attempt's, for a replay)
    answer: dict[str, Any] | None = None
    #: each wallet of the legs as this posting left it (empty for a replay)
    after: dict[str, WalletSnapshot] = field(default_factory=dict)

    @property
    def replayed(self) -> bool:
        return bool(self.answer and self.answer["replayed"])

    @property
    def journal_id(self) -> str:
        return self.answer["journal_id"] if self.answer else ""


# -- statements -------------------------------------------------------------------------------
_JOURNALS, _ENTRIES, _WALLETS = Journal.__table__, Entry.__table__, Wallet.__table__
#: the journal insert that skips (rowcount 0) when the tenant's kind + key exists already
_INSERT_JOURNAL = {name: DriverStatement(dialect.insert(_JOURNALS).on_conflict_do_nothing(
    index_elements=["tenant_id", "kind", "idem_key"])) for name, dialect in (("postgresql", postgresql),
                                                                              ("sqlite", sqlite))}
#: the same for many rows, telling which were written
_INSERT_JOURNAL_RETURNING = {name: dialect.insert(_JOURNALS).on_conflict_do_nothing(
    index_elements=["tenant_id", "kind", "idem_key"]).returning(_JOURNALS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_INSERT_ENTRIES = DriverStatement(_ENTRIES.insert())
_REPLAY = select(_JOURNALS.c.fingerprint, _JOURNALS.c.result).where(
    _JOURNALS.c.tenant_id == bindparam("tenant_id"), _JOURNALS.c.kind == bindparam("kind"),
    _JOURNALS.c.idem_key == bindparam("key"))
_KEY_USED = DriverStatement(select(_JOURNALS.c.id).where(
    _JOURNALS.c.tenant_id == bindparam("tenant_id"), _JOURNALS.c.kind == bindparam("kind"),
    _JOURNALS.c.idem_key == bindparam("key")))
_DELTAS = {"available": _WALLETS.c.available + bindparam("d_available"),
           "held": _WALLETS.c.held + bindparam("d_held")}
#: an unlocked wallet's move: locks the row and returns the balances it left
_MOVE = DriverStatement(update(_WALLETS).where(_WALLETS.c.id == bindparam("wallet_id")).values(**_DELTAS)
                        .returning(_WALLETS.c.available, _WALLETS.c.held))
#: the same, only when the funds (plus overdraft) still cover it, judged on the row's latest
#: committed version (a hold's reservation): no row when they do not
_MOVE_GUARDED = DriverStatement(update(_WALLETS).where(
    _WALLETS.c.id == bindparam("wallet_id"), _DELTAS["available"] >= -_WALLETS.c.overdraft_limit)
    .values(**_DELTAS).returning(_WALLETS.c.available, _WALLETS.c.held))
_DELETE_JOURNALS = _JOURNALS.delete().where(_JOURNALS.c.id.in_(bindparam("journal_ids", expanding=True)))
_DELETE_HOLDS = Hold.__table__.delete().where(Hold.__table__.c.id.in_(bindparam("hold_ids", expanding=True)))


# -- the primitive ----------------------------------------------------------------------------
def post(ctx: CallContext, uow: UnitOfWork, postings: Sequence[Posting], *,
         then: Callable[[list[Posting]], None] | None = None, guarded: bool = False,
         all_or_nothing: bool = False) -> list[dict[str, Any]] | None:
    """Write ``postings`` in their order: journals, the caller's ``then``, balances, entries.

    :param then: called with the postings whose journals were written (never with none),
        before any wallet row is moved: the caller's own rows that go with them.
    :param guarded: move the (one) wallet only when its funds plus overdraft still cover it;
        when they do not, the journals written are deleted again and the answer is None
        (what ``then`` wrote is the caller's to delete).
    :param all_or_nothing: a key taken meanwhile (a journal skipped) deletes the journals
        written so far and answers None, before ``then``; otherwise that posting's answer is
        the first attempt's stored result (``replayed``), or Conflict for another body.
    :return: each posting's :attr:`~Posting.answer`, or None (see above).
    :raise AssertionError: an unbalanced posting (a bug in a use-case, never a user error).
    """
    for posting in postings:
        if sum(leg.amount for leg in posting.legs) != 0:
            raise AssertionError(f"unbalanced journal {posting!r}")
    conn = uow.session.connection()
    now = utcnow()
    rows = [{"id": new_id("jnl"), "tenant_id": ctx.tenant_id, "kind": posting.kind, "idem_key": posting.key,
             "fingerprint": posting.fp, "result": posting.result, "meta": posting.meta, "created_at": now}
            for posting in postings]
    for row in rows:
        row["result"] = dict(row["result"], journal_id=row["id"])
    inserted = _insert_journals(conn, rows)
    written: list[Posting] = []
    for posting, row in zip(postings, rows):
        if inserted(row):
            posting.answer = dict(row["result"], replayed=False)
            written.append(posting)
    if all_or_nothing and len(written) < len(postings):
        _delete_journals(conn, written)
        return None
    for posting, row in zip(postings, rows):
        if not inserted(row):  # a concurrent first attempt with this key committed after the look-up: its answer
            posting.answer = replay(ctx, uow, posting.kind, posting.key or "", posting.fp or "")
            if posting.answer is None:  # pragma: no cover - it committed, so the look-up finds it
                raise Conflict("concurrent write conflict; retry")
    if written:
        if then is not None:
            then(written)
        wallets, deltas = _deltas(written)
        balances = _move(conn, wallets, deltas, guarded)
        if balances is None:
            _delete_journals(conn, written)
            return None
        _INSERT_ENTRIES.run(conn, _entries(ctx, written, balances, deltas, now))
        _refresh_session(uow, wallets)
    return [posting.answer for posting in postings]


def _insert_journals(conn, rows: list[dict[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    """Insert the journal ``rows`` (each skipped when its tenant, kind and key exist already);
    :return: whether a row was written. Several rows of distinct keys are one statement (a
    batch's captures: SQLAlchemy sends an ``INSERT … RETURNING`` of many parameter sets as
    one multi-row INSERT); a lone row goes through the driver as before."""
    keys = [(row["kind"], row["idem_key"]) for row in rows if row["idem_key"] is not None]
    if len(rows) > 1 and len(set(keys)) == len(keys):  # (no key: no conflict)
        statement = _INSERT_JOURNAL_RETURNING[conn.dialect.name]
        ids = set(conn.execute(statement, rows).scalars())
        return lambda row: row["id"] in ids
    statement = _INSERT_JOURNAL[conn.dialect.name]
    # one by one, in their order: of two rows with one key, the first is written
    ids = {row["id"] for row in rows if statement.run(conn, row) == 1}
    return lambda row: row["id"] in ids


def _deltas(written: list[Posting]) -> tuple[dict[str, Wallet | WalletSnapshot], dict[str, list[int]]]:
    """The wallets of the legs, and by how much each one's ``[available, held]`` moves."""
    wallets: dict[str, Wallet | WalletSnapshot] = {}
    deltas: dict[str, list[int]] = {}
    for posting in written:
        for leg in posting.legs:
            if leg.wallet is not None:
                wallets[leg.wallet.id] = leg.wallet
                deltas.setdefault(leg.wallet.id, [0, 0])[SIDES.index(leg.side or "")] += leg.amount
    return wallets, deltas


def _move(conn, wallets: dict[str, Wallet | WalletSnapshot], deltas: dict[str, list[int]],
          guarded: bool) -> dict[str, list[int]] | None:
    """Move each wallet by its legs' sum; :return: ``{wallet_id: [available, held]}`` after
    all of them, or None when a guarded move found the funds short."""
    if guarded and len(deltas) != 1:
        raise AssertionError("a guarded posting moves exactly one wallet")
    after: dict[str, list[int]] = {}
    for wallet_id in sorted(deltas):  # several rows locked in id order: no deadlock
        wallet, (d_available, d_held) = wallets[wallet_id], deltas[wallet_id]
        if isinstance(wallet, Wallet):  # locked by this transaction: the flush writes it
            if guarded:
                raise AssertionError("a guarded move is for a wallet not locked yet")
            wallet.available += d_available
            wallet.held += d_held
            after[wallet_id] = [wallet.available, wallet.held]
            continue
        row = (_MOVE_GUARDED if guarded else _MOVE).first(
            conn, {"wallet_id": wallet_id, "d_available": d_available, "d_held": d_held})
        if row is None:
            return None
        after[wallet_id] = list(row)
    return after


def _entries(ctx: CallContext, written: list[Posting], after: dict[str, list[int]],
             deltas: dict[str, list[int]], now) -> list[dict[str, Any]]:
    """Every leg's entry, each wallet entry with its account's balance right after its posting
    (the last posting's are the row's now); fills in each posting's :attr:`Posting.after`."""
    running = {wallet_id: [balance - delta for balance, delta in zip(after[wallet_id], deltas[wallet_id])]
               for wallet_id in after}
    entries: list[dict[str, Any]] = []
    for posting in written:
        for leg in posting.legs:
            wallet_id = balance_after = None
            if leg.wallet is not None:
                wallet_id, side = leg.wallet.id, SIDES.index(leg.side or "")
                running[wallet_id][side] += leg.amount
                balance_after = running[wallet_id][side]
            entries.append({"tenant_id": ctx.tenant_id, "journal_id": posting.journal_id, "wallet_id": wallet_id,
                            "account": leg.account, "amount": leg.amount, "currency": posting.currency,
                            "balance_after": balance_after, "created_at": now})
        posting.after = {leg.wallet.id: WalletSnapshot(leg.wallet.id, leg.wallet.currency, *running[leg.wallet.id],
                                                       leg.wallet.overdraft_limit)
                         for leg in posting.legs if leg.wallet is not None}
    return entries


def _refresh_session(uow: UnitOfWork, wallets: dict[str, Wallet | WalletSnapshot]) -> None:
    """Expire the session's copy of each wallet moved by a statement (if it holds one), so a
    later read sees the balances now (and a caller's savepoint rolled back, the balances then)."""
    for wallet_id, wallet in wallets.items():
        if not isinstance(wallet, Wallet):
            cached = uow.session.identity_map.get(uow.session.identity_key(Wallet, wallet_id))
            if cached is not None:
                uow.session.expire(cached, ["available", "held"])


def _delete_journals(conn, postings: list[Posting]) -> None:
    if postings:
        conn.execute(_DELETE_JOURNALS, {"journal_ids": [posting.journal_id for posting in postings]})


def delete_holds(conn, hold_ids: list[str]) -> None:
    """Delete hold rows a caller's ``then`` wrote when :func:`post` answered None."""
    if hold_ids:
        conn.execute(_DELETE_HOLDS, {"hold_ids": hold_ids})


# -- idempotency ------------------------------------------------------------------------------
def fingerprint(body: dict[str, Any]) -> str:
    """The request fingerprint stored with an idempotency key (sha256 of canonical JSON)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def replay(ctx: CallContext, uow: UnitOfWork, kind: str, key: str, fp: str) -> dict[str, Any] | None:
    """The stored result of ``key`` (``replayed=True``) when its body matches, None for a new
    key; Conflict when the key was used for another body.

    (Journals are only ever written by Core inserts, never pending in the session: no flush.)
    """
    params = {"tenant_id": ctx.tenant_id, "kind": kind, "key": key}
    conn = uow.session.connection()
    if _KEY_USED.first(conn, params) is None:  # the usual case: a new key
        return None
    found = conn.execute(_REPLAY, params).first()
    if found is None:
        return None
    if found.fingerprint != fp:
        raise Conflict(f"the key {key!r} was already used for another {kind} request")
    return dict(found.result or {}, replayed=True)


def keys_used(ctx: CallContext, uow: UnitOfWork, kind: str, keys: list[str]) -> set[str]:
    """Which of ``keys`` the tenant used for ``kind`` already (one statement)."""
    return set(uow.session.connection().execute(select(_JOURNALS.c.idem_key).where(
        _JOURNALS.c.tenant_id == ctx.tenant_id, _JOURNALS.c.kind == kind, _JOURNALS.c.idem_key.in_(keys))).scalars())


# -- checks every operation shares ------------------------------------------------------------
def check_amount(amount: Any, name: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationFailed(f"{name} must be a positive integer (minor units)",
                               errors={name: ["must be a positive integer"]})
    return amount


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise ValidationFailed("an idempotency key (ref_id/key) of 1-255 characters is required",
                               errors={"ref_id": ["required, 1-255 characters"]})
    return key


def veto_debit(ctx: CallContext, wallet_id: str, currency: str, amount: int, kind: str) -> None:
    """Ask the plugins (hook ``before_wallet_debit``) whether this debit of ``wallet_id`` may happen.

    :raise Forbidden: when a plugin vetoes (403, with the plugin's reason).
    """
    from flask import current_app, has_app_context

    if not has_app_context():
        return
    host = current_app.extensions["rop"].extras.get("plugins")
    if host is None:
        return
    reason = host.hook.before_wallet_debit(ctx=ctx, wallet_id=wallet_id, amount=amount, currency=currency,
                                           reason=kind)
    if reason:
        raise Forbidden(f"debit refused: {reason}", slug_reason=str(reason))


def ensure_funds(wallet: Wallet | WalletSnapshot, amount: int) -> None:
    if wallet.available - amount < -wallet.overdraft_limit:
        raise InsufficientFunds(
            f"wallet {wallet.id} has {wallet.available} {wallet.currency} available, {amount} needed",
            available=wallet.available, needed=amount)


# -- events -----------------------------------------------------------------------------------
def emit(ctx: CallContext, uow: UnitOfWork, message) -> None:
    """The one place wallet events leave the service: the bus outbox, in this transaction."""
    from hub.bus import publish

    publish(ctx, uow, message)


def movement(wallet: Wallet | WalletSnapshot, journal_id: str, kind: str, amount: int,
             hold_id: str | None = None) -> dict[str, Any]:
    """A ``wallet.credited``/``wallet.debited`` payload: the wallet's balances after the posting."""
    return {"wallet_id": wallet.id, "journal_id": journal_id, "kind": kind, "amount": amount,
            "currency": wallet.currency, "available": wallet.available, "held": wallet.held, "hold_id": hold_id}
