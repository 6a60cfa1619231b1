"""Auth turned off, the in-flight bound (429) and the time limit (504), on a second real server.

This server runs with batching off (LitServe's unbatched loop), at most 2 scoring requests in flight
and a 3 s time limit, which a 4000-token generation of the tiny model overruns whatever the machine
(~10 s on an idle 2-core one); scores-mode requests take ~0.1 s. Its database is PostgreSQL (when
reachable), so that a test can take the database away. The server lives for this module only: the
generation abandoned by the 504 test, which is last, dies with it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_CONFIG_ERROR, EXIT_USER_ERROR
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.store import RunItemSpec, Store
from evalsvc.store.tenants import LOCAL_TENANT, ensure_tenant
from tests.api.harness import (
    EVALSVC,
    LIMITS_SERVER_FLAGS,
    RunningServer,
    free_port,
    postgres_database,
    set_connections_allowed,
    start_server,
    stop_server,
    wav_bytes,
)
from tests.helpers import running_in_ci
from tests.store.factories import SeededItem, seed_run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths) -> Iterator[RunningServer]:
    """On PostgreSQL when it is reachable (the database-down test needs it), else on SQLite."""
    with postgres_database() as database_url:
        root = tmp_path_factory.mktemp("server-limits")
        running = start_server(root, tiny_paths, LIMITS_SERVER_FLAGS, database_url)
        yield running
        stop_server(running)


def files(seed: int) -> dict[str, tuple[str, bytes, str]]:
    return {
        "query": ("q.wav", wav_bytes(0.6, 700.0 + 19 * seed), "audio/wav"),
        "response": ("r.wav", wav_bytes(0.6, 1100.0 + 23 * seed), "audio/wav"),
    }


def test_auth_cannot_be_turned_off_on_a_public_interface(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--no-auth", "--host", "0.0.0.0", "--model", "tiny"])
    assert code == EXIT_USER_ERROR
    assert "loopback" in capsys.readouterr().err


@pytest.mark.slow  # 15-45 s: two interpreters import torch and transformers before the load fails
def test_a_model_that_cannot_load_stops_the_start_with_exit_3(tmp_path: Path) -> None:
    command = [str(EVALSVC), "serve", "--model", str(tmp_path / "missing"), "--data-dir", str(tmp_path)]
    done = subprocess.run([*command, "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_CONFIG_ERROR
    assert "model_load_failed" in done.stderr
    assert "does not exist" in done.stdout + done.stderr  # the worker logs its own error


def test_without_auth_no_key_is_needed_and_results_are_readable(server: RunningServer) -> None:
    answer = httpx.post(f"{server.url}/v1/score", files=files(0), timeout=30)
    assert answer.status_code == 200, answer.text
    result_id = answer.json()["id"]
    stored = httpx.get(f"{server.url}/v1/results/{result_id}")
    assert stored.status_code == 200 and stored.json()["scores"] == answer.json()["scores"]


def test_requests_beyond_the_in_flight_bound_get_429(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda seed: client.post("/v1/score", files=files(seed)), range(1, 13)))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) == {200, 429}, statuses
    rejected = next(answer for answer in answers if answer.status_code == 429)
    assert rejected.json()["error"]["code"] == "overloaded"
    assert rejected.headers["retry-after"] == "1"
    assert (
        'evalsvc_http_requests_total{endpoint="/v1/score",status="429"}'
        in httpx.get(f"{server.url}/metrics").text
    )


def test_database_down_is_503_and_the_server_recovers(server: RunningServer) -> None:
    if server.database_url is None:
        if running_in_ci():
            pytest.fail("PostgreSQL is unreachable (CI=true: this test must run)")
        pytest.skip("PostgreSQL is unreachable")
    set_connections_allowed(server.database_url, False)
    try:
        ready = httpx.get(f"{server.url}/ready")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        assert "database" in ready.json()["error"]["message"]
        answer = httpx.post(f"{server.url}/v1/score", files=files(50), timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "database_unavailable"
        assert answer.headers["retry-after"] == "1"
    finally:
        set_connections_allowed(server.database_url, True)
    assert httpx.get(f"{server.url}/ready").status_code == 200
    assert httpx.post(f"{server.url}/v1/score", files=files(50), timeout=30).status_code == 200


def test_an_export_that_fails_is_answered_with_its_error_not_a_cut_200(server: RunningServer) -> None:
    """The export's first batch is read before the answer starts: a failing query is a 500 with a
    JSON body, not a 200 whose body stops short (a client would take a truncated CSV for the data)."""
    if server.database_url is None:
        if running_in_ci():
            pytest.fail("PostgreSQL is unreachable (CI=true: this test must run)")
        pytest.skip("PostgreSQL is unreachable")
    store = Store(server.database_url)
    items = [
        SeededItem(RunItemSpec("a", "q.wav", "r.wav", "s", "d"), "1" * 64, "2" * 64, scores=(1, 2, 3, 4))
    ]
    run_id = seed_run(store, items, mode="scores", tenant_id=ensure_tenant(store, LOCAL_TENANT).id)
    store.dispose()
    export = f"{server.url}/v1/reports/runs/{run_id}/export"
    assert httpx.get(export).status_code == 200
    admin = create_engine(server.database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:  # the run is there; the query over its items fails
            connection.exec_driver_sql("ALTER TABLE run_items RENAME TO run_items_elsewhere")
        answer = httpx.get(export, params={"format": "csv"})
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"]["code"] == "internal_error"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql("ALTER TABLE run_items_elsewhere RENAME TO run_items")
        admin.dispose()
    assert httpx.get(export).status_code == 200


def test_scoring_over_the_time_limit_is_504_and_cache_hits_still_answer(server: RunningServer) -> None:
    """Last in the module: the model worker stays busy with the abandoned generation."""
    answer = httpx.post(f"{server.url}/v1/score", files=files(100), data={"mode": "assessment"}, timeout=30)
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["code"] == "scoring_timeout"
    # The API server is not blocked by the busy worker: probes and cache hits still answer.
    assert httpx.get(f"{server.url}/health").status_code == 200
    cached = httpx.post(f"{server.url}/v1/score", files=files(0), timeout=30)
    assert cached.status_code == 200 and cached.json()["cached"] is True
