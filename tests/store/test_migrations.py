"""Migrations: up and down on an empty database, models and migrations in agreement, schema checks."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from evalsvc.errors import StoreSchemaOutdated, StoreUnavailable
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.connection import create_db_engine
from evalsvc.store.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade
from evalsvc.store.models import Base

MODEL_TABLES = set(Base.metadata.tables)


def tables(url: str) -> set[str]:
    engine = create_db_engine(url, pooled=False)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    engine = create_db_engine(url, pooled=False)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def test_upgrade_then_downgrade_on_an_empty_database(db_url: str) -> None:
    assert tables(db_url) == set()

    assert upgrade(db_url) == (None, head_revision())
    assert tables(db_url) == MODEL_TABLES | {"alembic_version"}
    assert upgrade(db_url) == (head_revision(), head_revision())  # a second upgrade is a no-op

    assert downgrade(db_url, "base") == (head_revision(), None)
    assert tables(db_url) & MODEL_TABLES == set()
    assert revision(db_url) is None

    upgrade(db_url)  # and back up: the downgrade left nothing behind that gets in the way
    assert tables(db_url) >= MODEL_TABLES


def test_upgrading_from_0001_copies_existing_results_onto_their_items(db_url: str) -> None:
    """0002 adds result copies to run items; items finished before it get them from their results."""
    upgrade(db_url, "0001")
    engine = create_db_engine(db_url, pooled=False)
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO model_versions (id, fingerprint, backbone, model_id, prompt_version, decoding, packages)"
            " VALUES (1, 'f', 'b', 'm', 'p', '{}', '{}')",
            "INSERT INTO results (id, content_key, query_sha256, response_sha256, model_version_id, mode,"
            " ns, wa, eu, es, avg, error_code) VALUES"
            " (1, 'k1', 'q', 'r', 1, 'scores', 1.5, 2.5, 3.5, 4.5, 3.0, NULL),"
            " (2, 'k2', 'q', 's', 1, 'assessment', NULL, NULL, NULL, NULL, NULL, 'score_line_missing')",
            "INSERT INTO runs (id, name, mode, status, item_count, done_count, failed_count)"
            " VALUES (1, 'r', 'scores', 'done', 3, 2, 1)",
            "INSERT INTO run_items (id, run_id, item_key, query_ref, response_ref, meta, status, attempts,"
            " result_id, last_error_code) VALUES"
            " (1, 1, 'a', 'q', 'r', '{}', 'done', 1, 1, NULL), (2, 1, 'b', 'q', 's', '{}', 'done', 1, 2, NULL),"
            " (3, 1, 'c', 'q', 't', '{}', 'failed', 1, NULL, 'audio_unreadable')",
        ):
            connection.exec_driver_sql(statement)
    upgrade(db_url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT ns, wa, eu, es, avg, result_error_code, model_version_id FROM run_items ORDER BY id"
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        (1.5, 2.5, 3.5, 4.5, 3.0, None, 1),
        (None, None, None, None, None, "score_line_missing", 1),
        (None, None, None, None, None, None, None),
    ]


def test_upgrading_from_0002_gives_what_the_cli_stored_to_the_local_tenant(db_url: str) -> None:
    """0003: tenant-less runs, label sets and results (the CLI's, before it wrote as `local`) become
    the tenant `local`'s, the tenant `serve --no-auth` acts as; other tenants' rows stay theirs."""
    upgrade(db_url, "0002")
    engine = create_db_engine(db_url, pooled=False)
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO tenants (id, name) VALUES (7, 'alice')",
            "INSERT INTO model_versions (id, fingerprint, backbone, model_id, prompt_version, decoding, packages)"
            " VALUES (1, 'f', 'b', 'm', 'p', '{}', '{}')",
            "INSERT INTO results (id, content_key, query_sha256, response_sha256, model_version_id, mode)"
            " VALUES (1, 'k1', 'q', 'r', 1, 'scores'), (2, 'k2', 'q', 's', 1, 'scores'),"
            " (3, 'k3', 'q', 't', 1, 'scores')",
            "INSERT INTO tenant_results (tenant_id, result_id) VALUES (7, 2), (7, 3)",
            "INSERT INTO runs (id, name, mode, status, item_count, done_count, failed_count, tenant_id)"
            " VALUES (1, 'cli', 'scores', 'done', 1, 1, 0, NULL), (2, 'alice', 'scores', 'done', 1, 1, 0, 7)",
            "INSERT INTO run_items (id, run_id, item_key, query_ref, response_ref, meta, status, attempts,"
            " result_id) VALUES (1, 1, 'a', 'q', 's', '{}', 'done', 1, 2), (2, 2, 'a', 'q', 't', '{}', 'done', 1, 3)",
            "INSERT INTO label_sets (id, name, tenant_id) VALUES (1, 'mos', NULL), (2, 'hers', 7)",
        ):
            connection.exec_driver_sql(statement)
    upgrade(db_url)
    with engine.connect() as connection:
        [local] = connection.exec_driver_sql("SELECT id FROM tenants WHERE name = 'local'").scalars().all()
        runs = dict(connection.exec_driver_sql("SELECT id, tenant_id FROM runs").all())
        sets = dict(connection.exec_driver_sql("SELECT id, tenant_id FROM label_sets").all())
        grants = set(connection.exec_driver_sql("SELECT tenant_id, result_id FROM tenant_results").all())
    engine.dispose()
    assert runs == {1: local, 2: 7} and sets == {1: local, 2: 7}
    # Result 1 was nobody's (`evalsvc score`), result 2 is in the CLI's run (and alice's too).
    assert grants == {(local, 1), (local, 2), (7, 2), (7, 3)}


def test_0003_creates_no_tenant_when_every_row_has_one(db_url: str) -> None:
    upgrade(db_url)
    engine = create_db_engine(db_url, pooled=False)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM tenants").scalar() == 0
    engine.dispose()


def test_upgrading_from_0004_keeps_the_ids_tenants_were_given(db_url: str) -> None:
    """0005 numbers results per tenant; grants made before it keep `result_id` as their number."""
    upgrade(db_url, "0004")
    engine = create_db_engine(db_url, pooled=False)
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO model_versions (id, fingerprint, backbone, model_id, prompt_version, decoding, packages)"
            " VALUES (1, 'f', 'b', 'm', 'p', '{}', '{}')",
            "INSERT INTO results (id, content_key, query_sha256, response_sha256, model_version_id, mode)"
            " VALUES (5, 'k5', 'q', 'r', 1, 'scores'), (9, 'k9', 'q', 's', 1, 'scores')",
            "INSERT INTO tenants (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            "INSERT INTO tenant_results (tenant_id, result_id) VALUES (1, 5), (1, 9), (2, 5)",
        ):
            connection.exec_driver_sql(statement)
    upgrade(db_url)
    with engine.connect() as connection:
        grants = connection.exec_driver_sql(
            "SELECT tenant_id, result_id, number FROM tenant_results ORDER BY tenant_id, result_id"
        ).all()
        counters = connection.exec_driver_sql("SELECT id, last_result_number FROM tenants ORDER BY id").all()
    engine.dispose()
    assert [tuple(row) for row in grants] == [(1, 5, 5), (1, 9, 9), (2, 5, 5)]
    assert [tuple(row) for row in counters] == [(1, 9), (2, 5), (3, 0)]


def test_0006_adds_unclaimed_item_leases_and_its_downgrade_removes_them(db_url: str) -> None:
    upgrade(db_url, "0005")
    engine = create_db_engine(db_url, pooled=False)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO runs (id, name, mode, status, item_count, done_count, failed_count) VALUES (1, 'r', 'scores', 'running', 1, 0, 0)"
        )
        connection.exec_driver_sql(
            "INSERT INTO run_items (id, run_id, item_key, query_ref, response_ref, meta, status, attempts)"
            " VALUES (1, 1, 'a', 'q', 'r', '{}', 'pending', 0)"
        )
    upgrade(db_url, "0006")
    with engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT item_key, lease_holder, lease_expires_at FROM run_items"
        ).one()
    assert tuple(row) == ("a", None, None)

    downgrade(db_url, "0005")
    columns = {column["name"] for column in inspect(engine).get_columns("run_items")}
    with engine.connect() as connection:
        keys = connection.exec_driver_sql("SELECT item_key FROM run_items").scalars().all()
    engine.dispose()
    assert not columns & {"lease_holder", "lease_expires_at"} and keys == ["a"]


def test_models_and_migrations_agree(db_url: str) -> None:
    """`alembic check`: autogenerate finds nothing to add, drop or alter after the migrations ran."""
    upgrade(db_url)
    command.check(alembic_config(db_url))


def test_a_store_refuses_a_database_without_the_schema(db_url: str) -> None:
    with pytest.raises(StoreSchemaOutdated, match="evalsvc db upgrade"), Store(db_url).session():
        pass


def test_a_store_refuses_a_database_from_a_newer_evalsvc(db_url: str) -> None:
    upgrade(db_url)
    engine = create_db_engine(db_url, pooled=False)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'from_the_future'")
    engine.dispose()
    for auto_upgrade in (False, True):  # not even the default database is "upgraded" backwards
        with (
            pytest.raises(StoreSchemaOutdated, match="newer evalsvc"),
            Store(db_url, auto_upgrade=auto_upgrade).session(),
        ):
            pass


def _open_with_auto_upgrade(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    store = Store(url, auto_upgrade=True)
    with store.session():
        pass
    store.dispose()


def test_concurrent_first_use_migrates_once(db_url: str) -> None:
    """Several workers opening a fresh database at once: one migrates, the others wait and find it done."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    workers = [context.Process(target=_open_with_auto_upgrade, args=(db_url, barrier)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert revision(db_url) == head_revision()


def test_the_default_sqlite_database_is_created_and_migrated_on_first_use(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh" / "data")
    store = Store.from_settings(settings)
    assert store.auto_upgrade
    with store.session():
        pass
    store.dispose()
    assert (settings.data_dir / "evalsvc.sqlite3").is_file()
    assert revision(settings.resolved_database_url) == head_revision()


def test_an_explicit_database_is_not_migrated_implicitly(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'explicit.sqlite3'}")
    assert not Store.from_settings(settings).auto_upgrade


def test_an_unreachable_database_is_reported_as_unavailable() -> None:
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1/nowhere is unavailable"), store.session():
        pass


def test_0007_gives_every_existing_run_the_empathyeval_judge_keeps_its_items_and_downgrades(
    db_url: str,
) -> None:
    """On SQLite a rebuilt `runs` table would cascade to its items: 0007 only adds columns there."""
    upgrade(db_url, "0006")
    engine = create_db_engine(db_url, pooled=False)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO runs (id, name, mode, status, item_count, done_count, failed_count) VALUES (1, 'r', 'scores', 'done', 1, 1, 0)"
        )
        connection.exec_driver_sql(
            "INSERT INTO run_items (id, run_id, item_key, query_ref, response_ref, meta, status, attempts)"
            " VALUES (1, 1, 'a', 'q', 'r', '{}', 'done', 1)"
        )
    upgrade(db_url, "0007")
    with engine.connect() as connection:
        run = connection.exec_driver_sql("SELECT judge, group_id, max_cost_usd FROM runs").one()
        item = connection.exec_driver_sql("SELECT item_key, verdict_id, reference_ref FROM run_items").one()
    assert tuple(run) == ("empathyeval", None, None) and tuple(item) == ("a", None, None)
    downgrade(db_url, "0006")
    tables = set(inspect(engine).get_table_names())
    columns = {column["name"] for column in inspect(engine).get_columns("runs")}
    with engine.connect() as connection:
        keys = connection.exec_driver_sql("SELECT item_key FROM run_items").scalars().all()
    engine.dispose()
    assert not tables & {"transcripts", "emotion_labels", "llm_verdicts", "llm_calls"}
    assert "judge" not in columns and keys == ["a"]
