from __future__ import annotations

import importlib
import sys
import textwrap

import pytest


@pytest.fixture
def temp_plugin(tmp_path, monkeypatch):
    """Install a throwaway plugin on sys.path (a module plus a dist-info with its entry point)."""
    made: list[str] = []

    def make(name: str, source: str, dist: str | None = None) -> str:
        dist = dist or f"rop-test-{name}"
        module = f"rop_test_{name}_{len(made)}"
        root = tmp_path / f"site{len(made)}"
        root.mkdir()
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        info = root / f"{dist.replace('-', '_')}-0.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
        (info / "entry_points.txt").write_text(f"[rop]\n{name} = {module}\n")
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        made.append(module)
        return module

    yield make
    for module in made:
        sys.modules.pop(module, None)
