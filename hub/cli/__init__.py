"""The ``rop`` command line (docs/api.md, "The rop command line").

Every command has ``--help``. Bad input gets one line on stderr and a non-zero exit,
never a traceback: usage errors exit 2, operational errors exit 1.
"""
from __future__ import annotations

import importlib
import sys

import click

from hub.cli.base import CliError, main_group

#: Modules that add commands to ``main_group`` when imported (each service adds its own).
COMMAND_MODULES: tuple[str, ...] = (
    "hub.cli.run",
    "hub.cli.db",
    "hub.tenancy.cli",
    "hub.bus.cli",
    "hub.plugins.cli",
    "hub.providers.cli",
    "hub.wallets.cli",
    "hub.products.cli",
    "hub.bulk.cli",
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rop`` console script."""
    from hub.config import ConfigError
    from hub.embedded_redis import EmbeddedRedisError
    from hub.errors import HubError
    from hub.plugins.manager import PluginLoadError

    try:
        _add_plugin_commands()
        main_group.main(args=argv, prog_name="rop", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("rop: aborted", err=True)
        return 130
    except click.UsageError as exc:
        ctx = exc.ctx
        where = ctx.command_path if ctx else "rop"
        click.echo(f"{where}: error: {exc.format_message()} (see '{where} --help')", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"rop: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except (CliError, ConfigError, EmbeddedRedisError, PluginLoadError) as exc:
        click.echo(f"rop: error: {exc}", err=True)
        return 1
    except HubError as exc:
        message = exc.detail
        if exc.errors and exc.detail == exc.title:  # the generic title says nothing: add the fields
            message += " (" + "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                                        for k, v in exc.errors.items()) + ")"
        click.echo(f"rop: error: {message}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


_plugin_commands_added = False


def _add_plugin_commands() -> None:
    """Apply the ``register_cli_commands`` hook to ``rop`` (no app is built for it)."""
    global _plugin_commands_added
    if _plugin_commands_added:
        return
    from hub.plugins.manager import build_plugin_manager

    build_plugin_manager().hook.register_cli_commands(cli=main_group)
    _plugin_commands_added = True


def entry() -> None:  # pragma: no cover - console script glue
    sys.exit(main())


if __name__ == "__main__":  # python -m hub.cli
    sys.exit(main())
