"""Python's cyclic garbage collector, tuned for a long-running hub process.

Measured on the provider worker (bench/RESULTS.md, 2026-12-07 14:47–15:10): with Python's
defaults (a young collection every 700 allocations, 200,000 objects alive after start-up)
its collector ran 851 times over 3,000 purchases and took 2.4 s of its CPU, seven full
collections of about 0.25 s each among them — every thread of the process stopped while
they ran (128 calls in flight, 16 jobs). The objects made at start-up (modules, the
SQLAlchemy mappers, the plugins) live as long as the process: :func:`tune` moves them out of
the collector's sight (``gc.freeze``) and makes young collections rarer; the same run then
collected 5 times, in 0.2 s.
"""
from __future__ import annotations

import gc

#: allocations (less deallocations) of container objects between two young collections
#: (Python's default: 700); the older generations keep their defaults
YOUNG_THRESHOLD = 20_000


def tune() -> None:
    """Collect once, freeze what is alive (the process's start-up), and set the thresholds.
    Call it once a process has built its app, before it serves."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
