"""``rop db``: migrations."""
from __future__ import annotations

import click

from hub.cli.base import CliError, main_group


@main_group.group()
def db() -> None:
    """The database schema (Alembic migrations)."""


@db.command()
@click.option("--revision", default="heads", show_default=True, help="Target revision.")
def upgrade(revision: str) -> None:
    """Apply the migrations."""
    from hub.config import Config
    from hub.migrate import upgrade as do_upgrade

    config = Config.from_env()
    try:
        do_upgrade(config.database_url, revision)
    except Exception as exc:  # alembic's errors are many classes; show one line
        raise CliError(f"migration failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    click.echo(f"database at {revision} ({config.database_kind})")


@db.command()
def check() -> None:
    """Exit non-zero when the models and the migrated database differ."""
    from hub.config import Config
    from hub.db import make_engine
    from hub.migrate import drift

    config = Config.from_env()
    engine = make_engine(config.database_url, driver_shortcuts=config.driver_shortcuts)
    try:
        differences = drift(engine)
    finally:
        engine.dispose()
    if differences:
        for diff in differences:
            click.echo(f"drift: {diff}", err=True)
        raise CliError(f"{len(differences)} difference(s) between the models and the migrations")
    click.echo("models and migrations agree")


@db.command(short_help="Autogenerate a migration from the models.")
@click.option("-m", "--message", required=True, help="What the revision changes.")
def revision(message: str) -> None:
    """Autogenerate a migration from the models (review it before committing)."""
    from alembic import command

    from hub.config import Config
    from hub.migrate import alembic_config

    command.revision(alembic_config(Config.from_env().database_url), message=message, autogenerate=True)
