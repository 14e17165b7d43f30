"""Random sequences of ledger operations against the real database: the invariants hold after each."""
from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import delete

from hub.context import CallContext
from hub.db import unit_of_work
from hub.errors import Conflict, InsufficientFunds, ValidationFailed
from hub.wallets import accounts, checks, holds
from hub.wallets.models import Entry, Hold, Journal, Wallet

SCOPES = frozenset({"wallets:read", "wallets:write", "wallets:topup"})


def test_random_operation_sequences_keep_the_ledger_invariants(app):
    db = app.extensions["rop"].db
    counter = itertools.count()

    class Ledger(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            with app.app_context(), unit_of_work(db) as uow:
                for model in (Entry, Journal, Hold, Wallet):
                    uow.session.execute(delete(model))
                uow.commit()
            self.ctx = CallContext(tenant_id=f"ten_prop_{next(counter)}", client_id="c", scopes=SCOPES)
            self.wallets = [self.call(accounts.get_main_wallet).id]
            self.wallets += [self.call(accounts.create_wallet, f"c{i}", overdraft_limit=limit).id
                             for i, limit in enumerate((0, 30))]
            self.holds: list[str] = []

        def call(self, fn, *args, **kwargs):
            with app.app_context(), unit_of_work(db) as uow:
                result = fn(self.ctx, uow, *args, **kwargs)
                uow.commit()
                return result

        def attempt(self, fn, *args, **kwargs):
            try:
                return self.call(fn, *args, **kwargs)
            except (InsufficientFunds, Conflict, ValidationFailed):
                return None

        @rule(w=st.integers(0, 2), amount=st.integers(1, 300), key=st.integers(0, 5))
        def topup(self, w, amount, key):
            self.attempt(accounts.topup, self.wallets[w], amount, f"t{key}")

        @rule(a=st.integers(0, 2), b=st.integers(0, 2), amount=st.integers(1, 300), key=st.integers(0, 5))
        def transfer(self, a, b, amount, key):
            if a != b:
                self.attempt(accounts.transfer, self.wallets[a], self.wallets[b], amount, f"x{key}")

        @rule(w=st.integers(0, 2), amount=st.integers(1, 300), key=st.integers(0, 5))
        def hold(self, w, amount, key):
            hold = self.attempt(holds.place_hold, self.wallets[w], amount, f"h{key}")
            if hold is not None and hold.id not in self.holds:
                self.holds.append(hold.id)

        @rule(i=st.integers(0, 20), part=st.one_of(st.none(), st.integers(1, 300)), key=st.integers(0, 5))
        def capture(self, i, part, key):
            if self.holds:
                self.attempt(holds.capture_hold, self.holds[i % len(self.holds)], part, key=f"c{key}")

        @rule(i=st.integers(0, 20), key=st.integers(0, 5))
        def void(self, i, key):
            if self.holds:
                self.attempt(holds.void_hold, self.holds[i % len(self.holds)], key=f"v{key}")

        @rule(i=st.integers(0, 20), part=st.one_of(st.none(), st.integers(1, 300)), key=st.integers(0, 5))
        def reverse(self, i, part, key):
            if self.holds:
                self.attempt(holds.reverse_capture, self.holds[i % len(self.holds)], part, key=f"r{key}")

        @invariant()
        def ledger_verifies(self):
            # journals sum to zero, cached = recomputed, available >= -limit, held = open holds
            with app.app_context(), unit_of_work(db, readonly=True) as uow:
                report = checks.verify_ledger(uow)
            assert report["ok"], report["differences"]

    Ledger.TestCase.settings = settings(max_examples=12, stateful_step_count=15, deadline=None,
                                        suppress_health_check=list(HealthCheck), database=None)
    Ledger.TestCase().runTest()
