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


class ScratchEnv:
    """A virtual environment of its own that also sees the hub's (a ``.pth`` adds the running
    interpreter's site-packages): pip installs and uninstalls land here, never in the shared
    environment that other tests, and other test processes running beside this one, load
    their plugins from."""

    def __init__(self, root):
        import site
        import subprocess

        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        self.python = str(root / "bin" / "python")
        own = subprocess.run([self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
        shared = "; ".join(f"site.addsitedir({path!r})" for path in site.getsitepackages())
        (__import__("pathlib").Path(own) / "_rop_shared_site.pth").write_text(f"import site; {shared}\n")
        self.pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", self.python]

    def install(self, package) -> None:
        import subprocess

        subprocess.run(self.pip + ["install", "--no-build-isolation", "--no-deps", str(package)], check=True)

    def uninstall(self, *dists: str) -> None:
        import subprocess

        subprocess.run(self.pip + ["uninstall", "-y", *dists], check=True)


@pytest.fixture
def scratch_env(tmp_path):
    return ScratchEnv(tmp_path / "venv")
