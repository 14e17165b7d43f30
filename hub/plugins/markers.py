"""The ``rop`` pluggy markers. Plugins import ``hookimpl`` from the package root:
``from hub import hookimpl``."""
from __future__ import annotations

import pluggy

PROJECT = "rop"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
