"""The root ``rop`` group and helpers every command uses."""
from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask


class CliError(Exception):
    """An error to show the operator as one line."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="rop-hub", prog_name="rop")
def main_group() -> None:
    """ROP Hub: the Ralali Open Platform's command line.

    Configuration comes from the environment (ROP_DATABASE_URL, ROP_REDIS_URL,
    ROP_INSTANCE_PATH, ...); with none set the hub uses a SQLite file and its own
    Redis server under ./instance.
    """


def make_app(server: bool = False) -> Flask:
    """The hub app for a CLI command, configured from the environment.

    :param server: a long-running process (web, worker, scheduler) logs at INFO by
        default; a one-shot command only logs warnings unless ROP_LOG_LEVEL says otherwise.
    """
    import os

    from hub.app import create_app

    if server:
        return create_app()
    app = create_app(log_level=os.environ.get("ROP_LOG_LEVEL", "WARNING"))
    # A one-shot command that had to start the embedded Redis stops it again on exit, so
    # `rop demo` before `rop up` leaves nothing running once `rop up` stops.
    from hub.state import EMBEDDED_STARTED_HERE

    for embedded in EMBEDDED_STARTED_HERE:
        atexit.register(embedded.stop)
    EMBEDDED_STARTED_HERE.clear()
    return app


@contextmanager
def app_context() -> Iterator[Flask]:
    app = make_app()
    with app.app_context():
        yield app


def operator_name() -> str:
    """The account at the terminal: the name of the process's own user id, never ``LOGNAME`` or
    ``USER`` (what ``getpass.getuser`` reads first), which anyone sets: ``USER=bob rop wallets
    approvals approve …`` must not pass for a second operator (four-eyes)."""
    import os

    try:
        import pwd
    except ImportError:  # not a POSIX system: the login name is all there is
        import getpass

        return getpass.getuser()
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a user id with no passwd entry (a container's arbitrary uid)
        return f"uid-{os.getuid()}"


def operator_context(tenant_id: str | None = None):
    """The context of the person at the terminal (all scopes, actor ``cli:<account>``)."""
    from hub.context import CallContext

    return CallContext.system(actor=f"cli:{operator_name()}", tenant_id=tenant_id)


def tenant_id_for(uow, slug: str) -> str:
    """The id of the tenant with ``slug`` (or id). :raise CliError: naming an unknown tenant."""
    from hub.errors import NotFound
    from hub.tenancy.service import get_tenant

    try:
        return get_tenant(uow, slug).id
    except NotFound:
        raise CliError(f"no tenant {slug!r}") from None


def tenant_context(uow, slug: str):
    """The operator's context acting in the tenant ``slug``. :raise CliError: unknown tenant."""
    return operator_context(tenant_id_for(uow, slug))
