"""``rop plugins new NAME``: scaffold a provider plugin package from the templates in
``hub/plugins/template``.

The package installs (``pip install -e``) and passes its own tests at once: installed, its
code table code by code, and the contract kit (:mod:`hub.providers.testing`) against the
simulator it ships. Its provider speaks an example JSON protocol through the hub's HTTP
client; the partner replaces the protocol (plugin and simulator) with the provider's.
"""
from __future__ import annotations

import re
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent / "template"

#: template → path in the package (``{name}`` is the plugin's name)
FILES = {
    "setup.cfg.tmpl": "setup.cfg",
    "pyproject.toml.tmpl": "pyproject.toml",
    "setup.py.tmpl": "setup.py",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "github-workflow.yml.tmpl": ".github/workflows/test.yml",
    "package/__init__.py.tmpl": "rop_{name}/__init__.py",
    "package/plugin.py.tmpl": "rop_{name}/plugin.py",
    "package/simulator.py.tmpl": "rop_{name}/simulator.py",
    "tests/test_plugin.py.tmpl": "tests/test_{name}.py",
}

_NAME = re.compile(r"[a-z][a-z0-9_]{1,30}")
_DISTRIBUTION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")  # PEP 508


class ScaffoldError(Exception):
    pass


def _hub_minor() -> str:
    """The hub version the plugin is made against, as ``MAJOR.MINOR`` (its lowest requirement)."""
    from hub import __version__

    return ".".join(__version__.split(".")[:2])


def scaffold(name: str, directory: Path, distribution: str | None = None) -> Path:
    """Create ``directory/name`` with a provider plugin package; return its path.

    :param name: the plugin's name: its provider code, entry point and package ``rop_NAME``.
    :param distribution: the distribution's name on the package index (``rop-provider-NAME``
        by default).
    :raise ScaffoldError: a bad name, or the directory exists.
    """
    if not _NAME.fullmatch(name):
        raise ScaffoldError(f"plugin name {name!r}: use lower-case letters, digits and _ (2-31 chars)")
    distribution = distribution or f"rop-provider-{name.replace('_', '-')}"
    if not _DISTRIBUTION.fullmatch(distribution):
        raise ScaffoldError(f"distribution name {distribution!r}: letters, digits, '.', '_' and '-' "
                            "(starting and ending with a letter or digit)")
    target = Path(directory) / name
    if target.exists():
        raise ScaffoldError(f"{target} already exists")
    values = {"name": name, "title": name.replace("_", " ").title(), "dist": distribution,
              "klass": "".join(part.title() for part in name.split("_")), "hub_minor": _hub_minor()}
    for template, relative in FILES.items():
        path = target / relative.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template((TEMPLATES / template).read_text()).substitute(values))
    return target
