from __future__ import annotations

import pytest


@pytest.fixture
def receiver_factory():
    """``receiver_factory(statuses=())``: a real webhook receiver on a free port
    (``tests.bus.test_webhooks.Receiver``) answering ``statuses`` in turn; closed afterwards."""
    from tests.bus.test_webhooks import Receiver

    made = []

    def make(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()
