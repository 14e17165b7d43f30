"""The models and the migrations never drift, on SQLite and on PostgreSQL."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, Index, Integer, String, Table, create_engine, inspect, text

from hub.db import Base, make_engine
from hub.migrate import POSTGRES_FUNCTIONS, downgrade, drift, index_predicates, load_models, upgrade


def test_migrated_database_matches_the_models(database_url):
    engine = make_engine(database_url)
    try:
        assert drift(engine) == []
    finally:
        engine.dispose()


def _drift(url: str) -> list:
    """drift() of the database at ``url``, on an engine of its own."""
    engine = make_engine(url)
    try:
        return drift(engine)
    finally:
        engine.dispose()


def test_every_model_table_exists_after_upgrade(database_url):
    engine = make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(load_models().tables) <= tables


@pytest.fixture
def unmigrated_model():
    """A table added to the models without a migration (removed again afterwards)."""
    name = f"drift_probe_{uuid.uuid4().hex[:6]}"
    table = Table(name, Base.metadata, Column("id", Integer, primary_key=True), Column("note", String(20)))
    try:
        yield table
    finally:
        Base.metadata.remove(table)


def test_drift_is_detected_when_a_model_changes_without_a_migration(database_url, unmigrated_model):
    differences = _drift(database_url)
    assert any(d[0] == "add_table" and d[1].name == unmigrated_model.name for d in differences)


def test_drift_is_detected_for_a_changed_column(database_url):
    metadata = load_models()
    if not metadata.tables:
        pytest.skip("no tables yet")
    table = next(iter(metadata.sorted_tables))
    extra = Column(f"probe_{uuid.uuid4().hex[:6]}", String(10))
    table.append_column(extra)
    try:
        differences = _drift(database_url)
        assert any(d[0] == "add_column" and d[3].name == extra.name for d in differences)
    finally:
        table._columns.remove(extra)


def test_upgrade_is_repeatable_on_a_fresh_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    upgrade(url)
    upgrade(url)  # a second run is a no-op
    engine = create_engine(url)
    try:
        assert "alembic_version" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_0020_repairs_configurations_stored_under_a_tenants_slug(fresh_database_url):
    """Before 0020, ``rop providers add/enable --tenant SLUG`` stored the slug as the tenant id."""
    url = fresh_database_url
    upgrade(url, "0019_callback_body_bytes")
    engine = make_engine(url)
    try:
        now = "2026-12-01 00:00:00"
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, name, slug, status, settings, created_at, updated_at) "
                              "VALUES ('ten_1', 'Acme', 'acme', 'active', '{}', :t, :t)"), {"t": now})
            for cid, tenant in (("pcf_slug", "acme"), ("pcf_id", "ten_1"), ("pcf_none", "nobody"),
                                ("pcf_shared", None)):
                conn.execute(text(
                    "INSERT INTO provider_configs (id, provider_code, tenant_id, name, credentials_encrypted, "
                    "settings, enabled, all_tenants, created_at, updated_at) VALUES (:id, 'sandbox', :ten, :id, "
                    "'', '{}', true, true, :t, :t)"), {"id": cid, "ten": tenant, "t": now})
            for tenant in ("acme", "ten_1"):  # the same switch twice: by slug and by id
                conn.execute(text("INSERT INTO provider_config_tenants (config_id, tenant_id, created_at) "
                                  "VALUES ('pcf_shared', :ten, :t)"), {"ten": tenant, "t": now})
        upgrade(url)
        with engine.connect() as conn:
            configs = dict(conn.execute(text("SELECT id, tenant_id FROM provider_configs")).all())
            switches = conn.execute(text("SELECT config_id, tenant_id FROM provider_config_tenants")).all()
        assert configs == {"pcf_slug": "ten_1", "pcf_id": "ten_1", "pcf_none": "nobody", "pcf_shared": None}
        assert [tuple(s) for s in switches] == [("pcf_shared", "ten_1")]
    finally:
        engine.dispose()


@pytest.mark.postgres(reason="SQLite has no database functions")
def test_the_accept_function_comes_with_0026_and_goes_with_its_downgrade(fresh_database_url):
    url = fresh_database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        assert drift(engine) == []
        downgrade(url, "0025_admin_users_and_deliveries")
        assert ("missing_function", "rop_accept_v2(jsonb)") in drift(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regprocedure('rop_accept_v1(json)')")).scalar() is None
        upgrade(url)
        assert drift(engine) == []
    finally:
        engine.dispose()


@pytest.mark.postgres(reason="SQLite has no database functions")
def test_the_jsonb_accept_function_comes_with_0027_beside_v1_and_goes_with_its_downgrade(fresh_database_url):
    """0027 adds ``rop_accept_v2(jsonb)``, the one the code calls, and keeps
    ``rop_accept_v1(json)`` for the processes of the release before (a rolling deploy)."""
    url = fresh_database_url
    upgrade(url)
    engine = make_engine(url)

    def installed(signature: str) -> bool:
        with engine.connect() as conn:
            return conn.execute(text("SELECT to_regprocedure(:s)"), {"s": signature}).scalar() is not None

    try:
        assert POSTGRES_FUNCTIONS == ("rop_accept_v2(jsonb)",)
        assert drift(engine) == [] and installed("rop_accept_v1(json)") and installed("rop_accept_v2(jsonb)")
        downgrade(url, "0026_accept_function")
        assert [d for d in drift(engine) if d[0] == "missing_function"] == [("missing_function", "rop_accept_v2(jsonb)")]
        assert installed("rop_accept_v1(json)") and not installed("rop_accept_v2(jsonb)")
        upgrade(url)
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_0028_numbers_the_stored_events_by_their_seq_and_the_feeds_sequence_goes_on_after_them(fresh_database_url):
    """Events stored before 0028 keep their ``seq`` as ``feed_seq`` (a cursor a follower holds
    stays valid); on PostgreSQL the feed's sequence starts after them; the downgrade takes
    the column and the sequence away again."""
    from hub.bus.feed import sequence

    url = fresh_database_url
    upgrade(url, "0027_accept_function_jsonb")
    engine = make_engine(url)
    insert = text("INSERT INTO bus_events (id, tenant_id, type, envelope, occurred_at) "
                  "VALUES (:id, 'ten_m', 'x.y', '{}', CURRENT_TIMESTAMP)")
    try:
        with engine.begin() as conn:
            for n in range(3):
                conn.execute(insert, {"id": f"msg_old{n}"})
        upgrade(url)
        assert drift(engine) == []
        with engine.begin() as conn:
            conn.execute(insert, {"id": "msg_new"})
        assert sequence(engine) == 1
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, seq, feed_seq FROM bus_events ORDER BY seq")).all()
        assert [(i, s) for i, s, f in rows[:3]] == [(i, f) for i, s, f in rows[:3]]  # feed_seq = seq
        assert rows[3][0] == "msg_new" and rows[3][2] > rows[2][2]
        downgrade(url, "0027_accept_function_jsonb")
        differences = drift(engine)
        assert differences and all(d[0] != "missing_function" for d in differences)
        if engine.dialect.name == "postgresql":
            assert ("missing_sequence", "bus_events_feed_seq") in differences
        upgrade(url)
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_0029_marks_the_attempts_stored_before_that_never_left_the_hub(fresh_database_url):
    """Attempts stored before 0029 are marked ``not_sent`` from the hub's own wording for a
    purchase it did not send; a provider's rejection and every other attempt are not."""
    from hub.transactions.driver import UNUSABLE

    url = fresh_database_url
    upgrade(url, "0028_events_feed_seq")
    engine = make_engine(url)
    insert = text("INSERT INTO transaction_attempts (transaction_id, tenant_id, seq, config_id, provider_code, "
                  "provider_sku, reference, state, message, sent_at) VALUES "
                  "(:t, 'ten_m', 1, 'pcf_m', 'sandbox', 'TEL10', :t, :state, :message, CURRENT_TIMESTAMP)")
    stored = {
        "trx_unusable": ("rejected", UNUSABLE),
        "trx_no_connection": ("rejected", "not sent: connection refused"),
        "trx_breaker": ("rejected", "provider circuit breaker is open"),
        "trx_switched_off": ("rejected", "provider configuration is switched off"),
        "trx_out_of_stock": ("rejected", "out of stock"),
        "trx_failed": ("failed", "not sent: a provider's own words that happen to read so"),
        "trx_success": ("success", None),
    }
    try:
        with engine.begin() as conn:
            for trx, (state, message) in stored.items():
                conn.execute(insert, {"t": trx, "state": state, "message": message})
        upgrade(url)
        assert drift(engine) == []
        with engine.connect() as conn:
            marked = {t for t, flag in conn.execute(text("SELECT transaction_id, not_sent FROM transaction_attempts"))
                      if flag}
        assert marked == {"trx_unusable", "trx_no_connection", "trx_breaker", "trx_switched_off"}
        downgrade(url, "0028_events_feed_seq")
        upgrade(url)
        assert drift(engine) == []
    finally:
        engine.dispose()


def _index_predicates(engine, names: set[str]) -> dict[str, str | None]:
    """Each named index's ``WHERE`` as the database keeps it (None: a full index)."""
    with engine.connect() as conn:
        return {name: where for name, where in index_predicates(conn).items() if name in names}


def test_0030_drops_the_unused_indexes_makes_four_partial_and_its_downgrade_restores_them(fresh_database_url):
    """The indexes no query uses are gone, the partial ones carry their ``WHERE`` on both
    databases (drift() compares it), and the downgrade puts the full ones back."""
    url = fresh_database_url
    upgrade(url)
    engine = make_engine(url)
    dropped = {"ix_bus_events_tenant_id", "ix_bus_events_feed_seq", "ix_bus_outbox_tenant_id",
               "ix_wallet_entries_tenant_id", "ix_wallet_entries_account", "ix_wallet_holds_tenant_id"}
    partial = {"ix_bus_events_tenant_feed": "feed_seq", "ix_wallet_holds_expires_at": "expires_at",
               "ix_transactions_provider_ref": "provider_ref", "ix_transactions_source": "source",
               "ix_bus_events_unsequenced": "feed_seq", "ix_bus_outbox_unpublished": "published_at"}
    try:
        assert drift(engine) == []
        found = _index_predicates(engine, dropped | set(partial))
        assert not dropped & set(found)
        assert set(found) == set(partial)
        for name, column in partial.items():
            where = found[name].replace("(", "").replace(")", "").upper()
            negated = "IS NULL" if name in ("ix_bus_events_unsequenced", "ix_bus_outbox_unpublished") else "IS NOT NULL"
            assert where == f"{column.upper()} {negated}", (name, found[name])
        downgrade(url, "0029_attempt_not_sent")
        found = _index_predicates(engine, dropped | set(partial))
        assert set(found) == dropped | set(partial) - {"ix_bus_events_unsequenced"}
        found.pop("ix_bus_outbox_unpublished")  # a full index of (published_at, created_at) again
        assert all(where is None for where in found.values())
        upgrade(url)
        assert drift(engine) == []
    finally:
        engine.dispose()


def test_the_look_ups_of_the_partial_indexes_can_use_them(fresh_database_url):
    """Every query that filters on a partial index's column implies its ``WHERE``, so the
    planner may use the index (with sequential scans switched off, it must)."""
    if not fresh_database_url.startswith("postgresql"):
        pytest.skip("the plans asked about are PostgreSQL's")
    upgrade(fresh_database_url)
    engine = make_engine(fresh_database_url)
    from hub.bus import feed, relay

    look_ups = {
        "ix_bus_events_tenant_feed": "SELECT * FROM bus_events WHERE tenant_id = 'ten_x' AND feed_seq IS NOT NULL "
                                     "AND feed_seq > 5 ORDER BY feed_seq LIMIT 50",
        "ix_bus_events_unsequenced": str(feed._ANY),
        "ix_bus_outbox_unpublished": relay._TAKE % ("now()", "100"),
        # the admin's search (hub.transactions.client): a prefix of either, or the provider's reference
        "ix_transactions_provider_ref": "SELECT id FROM transactions WHERE ref_id LIKE 'q%' "
                                        "OR customer_no LIKE 'q%' OR provider_ref = 'q'",
        "ix_transactions_source": "SELECT id FROM transactions WHERE source = 'bulk:b:1'",
        "ix_wallet_holds_expires_at": "SELECT id FROM wallet_holds WHERE expires_at <= now()",
    }
    try:
        with engine.connect() as conn:
            conn.execute(text("SET enable_seqscan = off"))
            for index, query in look_ups.items():
                plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {query}")))
                assert index in plan, (index, plan)
    finally:
        engine.dispose()


def test_drift_is_detected_for_a_partial_index_whose_where_changed(database_url):
    """Alembic compares an index's columns only: drift() compares its ``WHERE`` too."""
    metadata = load_models()
    index = next(i for i in metadata.tables["transactions"].indexes if i.name == "ix_transactions_source")
    dialect = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    kept = index.dialect_options[dialect]._non_defaults.get("where")
    index.dialect_options[dialect]["where"] = text("source IS NULL")
    try:
        differences = _drift(database_url)
        assert ("index_predicate", "ix_transactions_source", "SOURCE IS NULL", "SOURCE IS NOT NULL") in differences
    finally:
        index.dialect_options[dialect]["where"] = kept


def test_the_predicate_check_reads_a_where_as_the_database_keeps_it_however_it_was_written(fresh_database_url):
    """An index made by hand with a lower-case ``where`` on a line of its own compares equal
    to the models' spelling, and another predicate does not (SQLite keeps the text as written;
    PostgreSQL its own rendering)."""
    from sqlalchemy import MetaData

    from hub.db import partial
    from hub.migrate import index_predicate_drift

    models = MetaData()
    table = Table("predicate_probe", models, Column("id", Integer, primary_key=True), Column("x", String(10)))
    Index("ix_predicate_probe_x", table.c.x, **partial("x IS NOT NULL"))
    engine = make_engine(fresh_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE predicate_probe (id INTEGER PRIMARY KEY, x VARCHAR(10))"))
            conn.execute(text("CREATE INDEX ix_predicate_probe_x ON predicate_probe (x)\n  where x is not null"))
        with engine.connect() as conn:
            assert index_predicate_drift(conn, models) == []
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_predicate_probe_x"))
            conn.execute(text("CREATE INDEX ix_predicate_probe_x ON predicate_probe (x) WHERE x IS NULL"))
        with engine.connect() as conn:
            assert index_predicate_drift(conn, models) == [
                ("index_predicate", "ix_predicate_probe_x", "X IS NOT NULL", "X IS NULL")]
    finally:
        engine.dispose()
