"""The interpreter, tuned for a long-running hub process: its garbage collector and how
often its threads take turns.

**The garbage collector.**
Measured on the provider worker (bench/RESULTS.md, 2026-12-07 14:47–15:10): with Python's
defaults (a young collection every 700 allocations, 200,000 objects alive after start-up)
its collector ran 851 times over 3,000 purchases and took 2.4 s of its CPU, seven full
collections of about 0.25 s each among them — every thread of the process stopped while
they ran (128 calls in flight, 16 jobs). The objects made at start-up (modules, the
SQLAlchemy mappers, the plugins) live as long as the process: :func:`tune` moves them out of
the collector's sight (``gc.freeze``) and makes young collections rarer; the same run then
collected 5 times, in 0.2 s.

**The switch interval.** A thread that wants the GIL asks the running one to let go after
``sys.getswitchinterval()`` (5 ms by default). A thread coming back from a database round
trip inside a unit of work that holds a hot row's lock (a wallet's, from its capture to the
commit) waits that long for each of its next steps, while every purchase of that wallet
waits on the lock. At 1 ms, in alternated end-to-end runs at 200 ms
(``bench/transactions.py``, bench/RESULTS.md, 2026-12-07 15:10–15:25): 199.5 and 164.5
completed/s against 182.0 and 154.7 with 5 ms.
"""
from __future__ import annotations

import gc
import sys

#: allocations (less deallocations) of container objects between two young collections
#: (Python's default: 700); the older generations keep their defaults
YOUNG_THRESHOLD = 20_000
#: seconds a thread runs before one waiting for the GIL gets it (Python's default: 0.005)
SWITCH_INTERVAL = 0.001


def tune() -> None:
    """Collect once, freeze what is alive (the process's start-up), set the collector's
    thresholds and the switch interval. Call it once a process has built its app, before it
    serves."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    sys.setswitchinterval(SWITCH_INTERVAL)
