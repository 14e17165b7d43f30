"""UnitOfWork.before_commit: work that runs last inside the transaction."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.db import unit_of_work
from hub.tenancy.models import Tenant


def _tenants(app) -> int:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.scalar(select(func.count()).select_from(Tenant))


def _tenant(n: int) -> Tenant:
    return Tenant(id=f"ten_uow_{n}", name=f"uow {n}", slug=f"uow-{n}", status="active")


def test_before_commit_work_runs_after_the_flush_and_commits_with_the_rest(app):
    seen = []
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.add(_tenant(1))

        def work():
            # the session was flushed first: the pending row is in the transaction already
            seen.append(uow.session.connection().scalar(select(func.count()).select_from(Tenant)))
            uow.session.add(_tenant(2))

        uow.before_commit(work)
        assert seen == []  # not yet
        uow.commit()
    assert seen == [1]
    assert _tenants(app) == 2


def test_before_commit_work_that_raises_prevents_the_commit(app):
    after = []
    with pytest.raises(RuntimeError), app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.add(_tenant(3))
        uow.after_commit(lambda: after.append("ran"))

        def work():
            raise RuntimeError("refused")

        uow.before_commit(work)
        uow.commit()
    assert _tenants(app) == 0 and after == []


def test_a_rollback_drops_the_before_commit_work(app):
    ran = []
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        uow.before_commit(lambda: ran.append(1))
        uow.rollback()
        uow.session.add(_tenant(4))
        uow.commit()
    assert ran == [] and _tenants(app) == 1


def test_a_before_commit_batch_runs_once_for_its_items_and_starts_again_after_a_commit_or_rollback(app):
    runs = []
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        uow.before_commit_batch("k", 1, runs.append)
        uow.before_commit_batch("k", 2, runs.append)
        uow.before_commit_batch("other", "x", runs.append)
        uow.commit()
        assert runs == [[1, 2], ["x"]]
        uow.before_commit_batch("k", 3, runs.append)
        uow.rollback()  # the batch goes with the rest
        uow.before_commit_batch("k", 4, runs.append)
        uow.commit()
    assert runs == [[1, 2], ["x"], [4]]


def test_batches_marked_first_run_before_the_other_work_in_the_order_they_began(app):
    order = []
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        uow.before_commit(lambda: order.append("plain"))
        uow.before_commit_batch("hot", "h", lambda items: order.append(("hot", items)))
        uow.before_commit_batch("a", 1, lambda items: order.append(("a", items)), first=True)
        uow.before_commit_batch("b", 2, lambda items: order.append(("b", items)), first=True)
        uow.before_commit_batch("a", 3, lambda items: order.append(("a", items)), first=True)
        uow.commit()
        assert order == [("a", [1, 3]), ("b", [2]), "plain", ("hot", ["h"])]
        order.clear()
        # after a commit the count starts again: a new first batch goes before new plain work
        uow.before_commit(lambda: order.append("plain"))
        uow.before_commit_batch("c", 4, lambda items: order.append(("c", items)), first=True)
        uow.commit()
    assert order == [("c", [4]), "plain"]


def test_an_after_commit_batch_runs_once_after_the_commit_and_never_after_a_rollback(app):
    runs = []
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.add(_tenant(90))
        uow.after_commit_batch("wake", "a", lambda items: runs.append((list(items), _tenants(app))))
        uow.after_commit(lambda: runs.append("plain"))
        uow.after_commit_batch("wake", "b", lambda items: runs.append(("ignored", items)))
        assert runs == []
        uow.commit()
        # once for both items, with the commit already visible, in the place of the first item
        assert runs == [(["a", "b"], 1), "plain"]
        uow.after_commit_batch("wake", "c", runs.append)
        uow.rollback()  # the batch goes with the rest
        uow.after_commit_batch("wake", "d", runs.append)
        uow.commit()
    assert runs == [(["a", "b"], 1), "plain", ["d"]]



def test_a_unit_of_work_with_nothing_done_commits_no_transaction_but_runs_its_after_commit_work(app):
    """An accept made by one call on a connection of its own leaves the request's session
    untouched: its commit begins and ends no transaction, its after-commit work still runs."""
    from sqlalchemy import event

    ended, ran = [], []
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        event.listen(uow.session, "after_commit", lambda session: ended.append(session))
        uow.after_commit(lambda: ran.append("relay"))
        uow.commit()
        assert uow.committed and ran == ["relay"] and ended == []
        uow.session.add(_tenant(91))  # something done: a real commit
        uow.commit()
    assert len(ended) == 1 and _tenants(app) == 1
