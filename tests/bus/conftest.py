from __future__ import annotations

import pytest


@pytest.fixture
def receiver_factory():
    """``receiver_factory(statuses=(), delay=0)``: a real webhook receiver on a free port
    (``tests.bus.test_webhooks.Receiver``) answering ``statuses`` in turn, each after
    ``delay`` seconds; closed afterwards."""
    from tests.bus.test_webhooks import Receiver

    made = []

    def make(statuses=(), delay: float = 0.0):
        made.append(Receiver(statuses, delay))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()
