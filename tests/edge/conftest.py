from __future__ import annotations

# The transactions service's fixtures: the sandbox catalog and a funded tenant.
from tests.transactions.conftest import funded, sandbox  # noqa: F401
