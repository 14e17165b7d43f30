"""``rop plugins list|new``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from hub.cli.base import CliError, main_group


@main_group.group("plugins")
def plugins_group() -> None:
    """Installed plugins and the partner kit."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(as_json: bool) -> None:
    """Every loaded plugin: name, version, providers, hooks implemented."""
    from hub.plugins.manager import build_plugin_manager

    host = build_plugin_manager()  # no app (and no database) needed
    for warning in host.warnings:
        click.echo(f"warning: {warning}", err=True)
    rows = [info.as_dict() for info in host.plugins]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:<16} {row['distribution']:<28} {row['version']:<10} "
                   f"providers={','.join(row['providers']) or '-'} hooks={','.join(row['hooks'])}")


@plugins_group.command("new", short_help="Scaffold a provider plugin package NAME.")
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False, path_type=Path),
              default=Path("plugins"), show_default=True, help="Where to create the package.")
@click.option("--distribution", default=None,
              help="The distribution's name on the package index (default rop-provider-NAME).")
def new_cmd(name: str, directory: Path, distribution: str | None) -> None:
    """Scaffold a provider plugin package NAME: a provider speaking an example JSON protocol
    through the hub's HTTP client, a simulator of it, tests with the contract kit, a CI
    workflow and a README."""
    from hub.plugins.scaffold import ScaffoldError, scaffold

    try:
        path = scaffold(name, directory, distribution)
    except ScaffoldError as exc:
        raise CliError(str(exc)) from exc
    click.echo(f"created {path}; next: pip install -e {path} && pytest {path}/tests")
