"""The plugin manager: discovery by entry point, broken plugins, hooks applied to the app."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from hub.app import create_app
from hub.cli import main
from hub.plugins import PluginLoadError, build_plugin_manager

GOOD = """
from flask import Blueprint
from hub import hookimpl

bp = Blueprint("hello_plugin", __name__)

@bp.get("/hello-plugin")
def hello():
    return {"hello": "plugin"}

@hookimpl
def register_blueprints(app):
    return [bp]

@hookimpl
def register_cli_commands(cli):
    import click

    @cli.command("hello-plugin")
    def hello_cmd():
        click.echo("hello from a plugin")
"""


def test_builtin_plugin_is_loaded_with_its_hooks():
    host = build_plugin_manager()
    builtin = next(p for p in host.plugins if p.builtin)
    assert {"route_transaction", "price_product", "validate_customer_number"} <= set(builtin.hooks)


def test_installed_plugin_is_discovered_and_listed(temp_plugin, capsys):
    temp_plugin("hello", GOOD)
    host = build_plugin_manager()
    info = next(p for p in host.plugins if p.name == "hello")
    assert info.distribution == "rop-test-hello" and info.version == "0.3"
    assert info.hooks == ["register_blueprints", "register_cli_commands"]
    assert main(["plugins", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "hello", "hooks": ["register_blueprints", "register_cli_commands"]}.items() <= \
        next(r for r in rows if r["name"] == "hello").items()


def test_register_blueprints_is_applied_by_the_app_factory(temp_plugin, config):
    temp_plugin("hello", GOOD)
    app = create_app(config)
    try:
        assert app.test_client().get("/hello-plugin").get_json() == {"hello": "plugin"}
        assert app.extensions["rop"].extras["plugins"].hook.register_blueprints
    finally:
        app.extensions["rop"].close()


def test_register_cli_commands_adds_to_rop(temp_plugin, capsys):
    from hub import cli

    temp_plugin("hello", GOOD)
    cli._plugin_commands_added = False
    try:
        assert main(["hello-plugin"]) == 0
        assert "hello from a plugin" in capsys.readouterr().out
    finally:
        cli.main_group.commands.pop("hello-plugin", None)


@pytest.mark.parametrize("source,reason", [
    ("import no_such_module_here\n", "ModuleNotFoundError"),
    ("raise RuntimeError('boom at import')\n", "boom at import"),
    ("from hub import hookimpl\n\n@hookimpl\ndef register_provider():\n    return []\n",
     "register_provider"),
    ("from hub import hookimpl\n\n@hookimpl\ndef register_providers():\n    raise ValueError('bad')\n",
     "bad"),
])
def test_a_broken_plugin_stops_start_up_with_one_line_naming_it(temp_plugin, source, reason, capsys):
    temp_plugin("broken", source)
    with pytest.raises(PluginLoadError) as info:
        build_plugin_manager()
    message = str(info.value)
    assert "broken" in message and reason in message and "\n" not in message
    assert main(["plugins", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rop: error: plugin 'broken'") and "\n" not in err


def test_a_plugin_installed_with_pip_is_discovered_and_gone_once_uninstalled(tmp_path, scratch_env):
    pkg = tmp_path / "throwaway"
    (pkg / "rop_throwaway").mkdir(parents=True)
    (pkg / "rop_throwaway" / "__init__.py").write_text(textwrap.dedent("""
        from hub import hookimpl

        @hookimpl
        def validate_customer_number(product_type, operator, customer_no):
            return None
    """))
    (pkg / "setup.cfg").write_text(textwrap.dedent("""
        [metadata]
        name = rop-throwaway
        version = 1.2.3
        [options]
        packages = rop_throwaway
        [options.entry_points]
        rop =
            throwaway = rop_throwaway
    """))
    (pkg / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    list_cmd = [scratch_env.python, "-m", "hub.cli", "plugins", "list", "--json"]
    scratch_env.install(pkg)
    rows = json.loads(subprocess.run(list_cmd, check=True, capture_output=True, text=True).stdout)
    found = next(r for r in rows if r["name"] == "throwaway")
    assert found["version"] == "1.2.3" and found["hooks"] == ["validate_customer_number"]
    scratch_env.uninstall("rop-throwaway")
    rows = json.loads(subprocess.run(list_cmd, check=True, capture_output=True, text=True).stdout)
    assert "throwaway" not in {r["name"] for r in rows}


def _dist_info(root, dist: str, version: str, entry_point: str) -> None:
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[rop]\n{entry_point}\n")


def test_a_plugin_reinstalled_under_another_distribution_name_is_listed_with_a_warning(tmp_path, monkeypatch,
                                                                                        capsys):
    import importlib

    (tmp_path / "rop_twice.py").write_text(GOOD)
    _dist_info(tmp_path, "rop-provider-twice", "0.1.0", "twice = rop_twice")
    _dist_info(tmp_path, "acme-twice-connector", "0.2.0", "twice = rop_twice")
    _dist_info(tmp_path, "acme-twice-other", "0.2.0", "twice_again = rop_twice")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        host = build_plugin_manager()
        assert [p.name for p in host.plugins if p.module == "rop_twice"] == ["twice"]  # loaded once
        assert len(host.warnings) == 2
        assert any("entry point 'twice' is installed by two distributions" in w and "rop-provider-twice" in w
                   and "acme-twice-connector" in w for w in host.warnings)
        assert any("module 'rop_twice'" in w and "acme-twice-other" in w for w in host.warnings)
        assert main(["plugins", "list"]) == 0
        err = capsys.readouterr().err
        assert err.count("warning: ") == 2 and "pip uninstall" in err
    finally:
        sys.modules.pop("rop_twice", None)
