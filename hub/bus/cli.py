"""``rop deadletters list|replay``."""
from __future__ import annotations

import json

import click

from hub.cli.base import app_context, main_group


@main_group.group("deadletters")
def deadletters() -> None:
    """Messages whose handler failed on every attempt."""


@deadletters.command("list")
@click.option("--all", "include_replayed", is_flag=True,
              help="Include dead letters already replayed or discarded.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_cmd(include_replayed: bool, as_json: bool) -> None:
    """List dead letters, newest first."""
    from hub.bus.deadletters import list_dead_letters
    from hub.db import unit_of_work

    with app_context() as app, unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        letters = list_dead_letters(uow, include_replayed=include_replayed)
        for letter in letters:
            error = letter.last_error.splitlines()[0] if letter.last_error else ""
            if as_json:
                click.echo(json.dumps({"id": letter.id, "message_id": letter.message_id, "type": letter.type,
                                       "handler": letter.handler, "tenant_id": letter.tenant_id,
                                       "attempts": letter.attempts, "last_error": error,
                                       "created_at": letter.created_at.isoformat(),
                                       "replayed_at": letter.replayed_at.isoformat() if letter.replayed_at else None,
                                       "discarded_at": (letter.discarded_at.isoformat()
                                                        if letter.discarded_at else None)}))
            else:
                click.echo(f"{letter.id}  {letter.created_at:%Y-%m-%d %H:%M:%S}  {letter.type}  {letter.handler}  "
                           f"attempts={letter.attempts}  {error}")
        if not letters and not as_json:
            click.echo("no dead letters")


@deadletters.command("replay")
@click.argument("ids", nargs=-1, required=True)
def replay_cmd(ids: tuple[str, ...]) -> None:
    """Enqueue dead letters IDS again (after fixing their cause)."""
    from hub.bus.deadletters import replay_dead_letters
    from hub.db import unit_of_work

    with app_context() as app, unit_of_work(app.extensions["rop"].db) as uow:
        letters = replay_dead_letters(app, uow, list(ids))
        uow.commit()
    for letter in letters:
        click.echo(f"replayed {letter.id} ({letter.type} -> {letter.handler})")
