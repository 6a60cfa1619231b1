"""The compose topology on one machine: a real `evalsvc serve` holds the model, an `evalsvc worker`
holds none and scores a queued run through it (`EVALSVC_MODEL_URL`), both on the same database."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from evalsvc.bulk.manifest import read_manifest
from evalsvc.bulk.queue import ShardQueue
from evalsvc.bulk.run_operations import queue_run, record_runs, run_state
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings
from evalsvc.store import Result, RunItem, Store
from tests.api.harness import AUTH_SERVER_FLAGS, EVALSVC, RunningServer, shared_server
from tests.bulk.conftest import SMALL

pytestmark = pytest.mark.integration


@pytest.fixture
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths
) -> RunningServer:
    return shared_server(request.config, tmp_path_factory, tiny_paths, "auth", AUTH_SERVER_FLAGS)


def test_a_worker_without_a_model_scores_through_the_http_model_tier(
    server: RunningServer, redis_url: str, small_manifest: Path, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=server.data_dir, redis_url=redis_url, bulk_queue=f"test-{uuid.uuid4().hex[:8]}"
    )
    store = Store.from_settings(settings)  # the server's own database (SQLite in its data directory)
    items = read_manifest(small_manifest, [small_manifest.parent]).accepted(skip_invalid=False)
    [run_id] = record_runs(store, name="through-http", mode="scores", items=items)
    assert queue_run(store, ShardQueue.from_settings(settings), run_id, 10) == 2

    env = {name: value for name, value in os.environ.items() if not name.startswith("EVALSVC_")} | {
        "EVALSVC_DATA_DIR": str(server.data_dir),
        "EVALSVC_REDIS_URL": redis_url,
        "EVALSVC_BULK_QUEUE": settings.bulk_queue,
        "EVALSVC_MODEL_URL": server.url,
        "EVALSVC_API_KEY": server.api_key("bulk-workers"),
        "EVALSVC_MODEL": str(tmp_path / "never-loaded"),  # proof that the worker loads no model
    }
    worker = subprocess.run(
        [str(EVALSVC), "worker", "--burst", "--no-scheduler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]

    summary = run_state(store, run_id)
    assert (summary.status, summary.done, summary.failed) == ("done", SMALL, 0)
    with store.session() as session:
        linked = session.scalars(select(RunItem.result_id).where(RunItem.run_id == run_id)).all()
        results = session.scalars(select(Result).where(Result.id.in_(linked))).all()
    assert len(set(linked)) == SMALL and len(results) == SMALL
    assert all(result.avg is not None and 1.0 <= result.avg <= 5.0 for result in results)
    store.dispose()
