"""Fixtures every test of the hub uses: a real Redis server, a real database, the app.

- Redis: a ``redis-server`` that this suite starts on a free port and stops at the end
  (the same embedded server the hub uses; never a mock, never the machine's 6379).
- Database: a SQLite file, or, when ``ROP_TEST_DATABASE_URL`` points at PostgreSQL, a
  fresh database created on that server for this run and dropped afterwards. It is
  migrated once with Alembic; each test starts from empty tables.
"""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hub.app import create_app
from hub.config import Config
from hub.embedded_redis import EmbeddedRedis, free_port
from hub.migrate import load_models, upgrade

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _psycopg_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real Redis server on a free port for the whole run."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False, port=free_port())
    url = server.ensure_running()
    yield server, url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server[1]


@contextlib.contextmanager
def postgres_database(base: str, prefix: str = "rop_test") -> Iterator[str]:
    """A new database on the PostgreSQL server of ``base``, dropped afterwards: its URL."""
    base = _psycopg_url(base)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """A migrated database for this run: SQLite, or a fresh PostgreSQL database."""
    base = os.environ.get("ROP_TEST_DATABASE_URL")
    if not base:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        upgrade(url)
        yield url
        return
    with postgres_database(base) as url:
        upgrade(url)
        yield url


@pytest.fixture
def fresh_database_url(tmp_path):
    """An empty database of the test's own (not migrated): SQLite, or a new PostgreSQL database."""
    base = os.environ.get("ROP_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    with postgres_database(base, "rop_fresh") as url:
        yield url


@pytest.fixture(scope="session")
def is_postgres(database_url) -> bool:
    return database_url.startswith("postgresql")


#: Set by .ci/run for its PostgreSQL run: the run must really be on PostgreSQL, and a test
#: marked ``postgres`` may not skip there (a skipped money race is a race nobody checked).
REQUIRE_POSTGRES = os.environ.get("ROP_TEST_REQUIRE_POSTGRES") == "1"


def pytest_sessionstart(session):
    url = os.environ.get("ROP_TEST_DATABASE_URL", "")
    if REQUIRE_POSTGRES and not url.startswith(("postgresql", "postgres://")):
        raise pytest.UsageError(
            "ROP_TEST_REQUIRE_POSTGRES=1 needs ROP_TEST_DATABASE_URL=postgresql://... (got "
            f"{url or 'nothing'})")


@pytest.fixture(autouse=True)
def _postgres_only(request):
    """``@pytest.mark.postgres``: the test needs PostgreSQL (skipped on SQLite)."""
    marker = request.node.get_closest_marker("postgres")
    if marker is not None and not request.getfixturevalue("is_postgres"):
        pytest.skip(marker.kwargs.get("reason") or (marker.args[0] if marker.args else "PostgreSQL only"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_POSTGRES and report.skipped and item.get_closest_marker("postgres") is not None:
        report.outcome = "failed"
        report.longrepr = f"a PostgreSQL-only test skipped in the PostgreSQL run: {report.longrepr}"


def _empty_tables(engine) -> None:
    metadata = load_models()
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        return
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    if not names:
        return
    for attempt in (1, 2, 3):
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '20s'"))
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            return
        except OperationalError as exc:
            if attempt == 3 or not ("lock timeout" in str(exc) or "deadlock detected" in str(exc)):
                raise
            if "deadlock detected" in str(exc):
                # The TRUNCATE locks table after table; a unit of work an earlier test's thread
                # still finishes (a relay's, a worker's) locked one of them and waited for
                # another: PostgreSQL ended the TRUNCATE. That unit of work ends now: again.
                time.sleep(0.5)
            else:
                _end_stragglers(engine)


def _end_stragglers(engine) -> None:
    """A connection an earlier test left inside a transaction blocks the TRUNCATE: say which
    (so the leak can be found) and end it, so one leak does not hang the rest of the run."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT pid, state, application_name, now() - xact_start AS age, left(query, 300) AS query "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )).all()
        for row in rows:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": row.pid})
        conn.commit()
    report = "; ".join(f"pid {r.pid} {r.state} for {r.age}: {r.query!r}" for r in rows)
    warnings.warn(f"ended {len(rows)} connection(s) an earlier test left open: {report}", stacklevel=2)


@pytest.fixture
def instance_path(tmp_path) -> Path:
    path = tmp_path / "instance"
    path.mkdir()
    return path


@pytest.fixture
def config(database_url, redis_url, instance_path) -> Config:
    return Config.from_env(
        {}, instance_path=instance_path, database_url=database_url, redis_url=redis_url,
        webhook_allow_private=True, testing=True, log_format="console", log_level="WARNING",
        # a change made behind the use-cases' back stays unseen this long: tests that show it
        # must not depend on how fast a loaded machine runs them (TTL tests move a clock)
        cache_ttl=60.0,
        # ROP_TEST_DRIVER_SHORTCUTS=0 runs the suite with hub.driver's shortcuts off
        driver_shortcuts=os.environ.get("ROP_TEST_DRIVER_SHORTCUTS", "1") != "0",
    )


@pytest.fixture
def app(config):
    """A hub app on the run's database and Redis, with empty tables and an empty Redis."""
    application = create_app(config)
    state = application.extensions["rop"]
    state.redis.flushdb()
    _empty_tables(state.db.engine)
    yield application
    state.close()


@pytest.fixture
def client(app):
    return app.test_client()


#: ``ROP_PUBLIC_URL`` of ``rop`` run in this process (``cli_env``): outside the embedded
#: defaults the hub needs its address.
CLI_PUBLIC_URL = "https://hub.example.com"


@pytest.fixture
def cli_env(monkeypatch, config) -> str:
    """The environment of ``rop`` run in this process (``hub.cli.main``) against the suite's
    database and Redis; returns its ``ROP_PUBLIC_URL``."""
    for key, value in {"ROP_DATABASE_URL": config.database_url, "ROP_REDIS_URL": config.redis_url,
                       "ROP_INSTANCE_PATH": str(config.instance_path), "ROP_PUBLIC_URL": CLI_PUBLIC_URL,
                       "ROP_ENCRYPTION_KEYS": ",".join(config.encryption_keys)}.items():
        monkeypatch.setenv(key, value)
    return CLI_PUBLIC_URL


@pytest.fixture
def cli(app, cli_env, capsys):
    """``cli("providers", "list")``: ``rop …`` in this process, ``(exit code, stdout, stderr)``;
    ``cli.public_url`` is the hub's address it runs with."""
    from hub.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    run.public_url = cli_env
    return run


@pytest.fixture
def run_rop(app, cli_env, capsys, monkeypatch):
    """``run_rop("tenants", "list", stdin="…", env={"ROP_X": "1"})``: ``rop …`` in this process,
    answered as ``subprocess.run`` would (a CompletedProcess: returncode, stdout, stderr).
    On empty tables and an empty Redis (``app``), as every other test: what an earlier test
    of the same worker left is not listed by this one's ``rop tenants list``.

    An interpreter per command cost the suite a second or more of CPU each; the console
    script as a process of its own (entry point, exit status, signals) is tested in
    tests/test_cli.py and wherever a second process is the point (another process's caches).
    """
    from hub.cli import main
    from hub.tenancy.service import use_cheap_password_hashing

    def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        capsys.readouterr()
        with monkeypatch.context() as patched:
            for key, value in (env or {}).items():
                patched.setenv(key, value)
            patched.setattr(sys, "stdin", io.StringIO(stdin or ""))
            code = main([str(a) for a in args])
        out = capsys.readouterr()
        use_cheap_password_hashing(True)  # the command's app hashed as the hub does; the suite's apps do not
        return subprocess.CompletedProcess(["rop", *args], code, out.out, out.err)

    return run


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# -- tenants and clients --------------------------------------------------------------------
class TestTenant:
    """A tenant with one API client and a token, made through the tenancy use-cases."""

    __test__ = False  # not a test class

    def __init__(self, app, tenant, client, secret, token):
        from hub.context import CallContext

        self.app = app
        self.id = tenant.id
        self.slug = tenant.slug
        self.client_id = client.id
        self.client_secret = secret
        self.scopes = client.scope_set
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ctx = CallContext(tenant_id=tenant.id, client_id=client.id, scopes=client.scope_set)
        #: the operator acting in this tenant (top-ups: only the platform records money received)
        self.operator = CallContext.system(actor="cli:tests", tenant_id=tenant.id)


@pytest.fixture
def tenant_factory(app):
    """Make tenants: ``tenant_factory(name=None, scopes=None, rate_limit_per_minute=None)``.

    ``scopes=None`` gives the client every scope a tenant's client may hold (the tests use the
    whole tenant API; a real client created without scopes gets read and purchase only)."""
    from hub.auth import issue_access_token
    from hub.context import CallContext
    from hub.db import unit_of_work
    from hub.tenancy import service
    from hub.tenancy.scopes import TENANT_SCOPES

    counter = iter(range(1, 10_000))

    def make(name: str | None = None, scopes=None, rate_limit_per_minute: int | None = None) -> TestTenant:
        n = next(counter)
        name = name or f"Tenant {n} {uuid.uuid4().hex[:4]}"
        state = app.extensions["rop"]
        with unit_of_work(state.db) as uow:
            ctx = CallContext.system(actor="cli:tests")
            tenant = service.create_tenant(ctx, uow, name)
            client, secret = service.create_client(ctx, uow, tenant.id, scopes=scopes or sorted(TENANT_SCOPES),
                                                   rate_limit_per_minute=rate_limit_per_minute)
            uow.commit()
        token = issue_access_token(state.config.secret_key, client.id, tenant.id, client.scope_set,
                                   state.config.access_token_ttl)
        return TestTenant(app, tenant, client, secret, token)

    return make


class TestPlatformClient:
    """A platform client (no tenant) and its token: ``headers_for(tenant)`` names the tenant
    it acts for in ``ROP-On-Behalf-Of``."""

    __test__ = False

    def __init__(self, client, secret, token):
        self.client_id = client.id
        self.client_secret = secret
        self.scopes = client.scope_set
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    def headers_for(self, tenant) -> dict[str, str]:
        """Headers acting for ``tenant`` (a TestTenant, or a slug or id)."""
        return {**self.headers, "ROP-On-Behalf-Of": getattr(tenant, "slug", tenant)}


@pytest.fixture
def platform_factory(app):
    """Make platform clients: ``platform_factory(scopes=None)`` (None: ``wallets:topup``)."""
    from hub.auth import issue_access_token
    from hub.context import CallContext
    from hub.db import unit_of_work
    from hub.tenancy import service

    def make(scopes=None) -> TestPlatformClient:
        state = app.extensions["rop"]
        with unit_of_work(state.db) as uow:
            client, secret = service.create_client(CallContext.system(actor="cli:tests"), uow, None,
                                                   kind="platform", scopes=scopes, name="finance")
            uow.commit()
        token = issue_access_token(state.config.secret_key, client.id, None, client.scope_set,
                                   state.config.access_token_ttl)
        return TestPlatformClient(client, secret, token)

    return make


@pytest.fixture
def app_with_limits(app, config):
    """Another app on the same database and Redis (tables emptied by ``app``) with other
    ``Limits``: ``app_with_limits(body_json=1000, ...)``. Tokens of ``tenant_factory`` work on it."""
    import dataclasses

    made = []

    def make(**limits):
        application = create_app(dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits)))
        made.append(application)
        return application

    yield make
    for application in made:
        application.extensions["rop"].close()
