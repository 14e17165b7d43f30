"""hub.interpreter: the garbage collector and the switch interval of a serving process."""
from __future__ import annotations

import subprocess
import sys

from hub import interpreter


def test_tune_freezes_the_start_up_heap_makes_young_collections_rarer_and_turns_shorter():
    """hub.interpreter, in a process of its own (the test process keeps its collector as it is)."""
    code = ("import gc, sys, hub.app; from hub import interpreter; before = gc.get_freeze_count(); "
            "interpreter.tune(); print(before, gc.get_freeze_count(), gc.get_threshold()[0], sys.getswitchinterval())")
    out = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, check=True).stdout.split()
    before, frozen, young, switch = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    assert before == 0 and frozen > 10_000  # the modules imported, out of the collector's sight
    assert young == interpreter.YOUNG_THRESHOLD != 700
    assert switch == interpreter.SWITCH_INTERVAL < 0.005
