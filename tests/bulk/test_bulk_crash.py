"""Crashes, with real worker processes: SIGKILL mid-shard, and Redis losing everything mid-run.

Shards are made slow deterministically: one pair per model call (`EVALSVC_BULK_BATCH_SIZE=1`), so a
shard of 50 items takes 50 batches, and the tests act once SQL shows a few of them done. The heartbeat
TTL is 2 s, so a killed worker's job counts as abandoned 2 s after its last batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from evalsvc.bulk.manifest import read_manifest
from evalsvc.bulk.queue import ShardQueue
from evalsvc.bulk.service import queue_run, record_run, run_progress
from evalsvc.cli import main
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings
from evalsvc.store import Result, RunItem, Store
from tests.bulk.conftest import PAIRS, item_states, result_count

pytestmark = pytest.mark.integration

EVALSVC = Path(sys.executable).with_name("evalsvc")
HEARTBEAT_TTL_S = 2
TIMEOUT_S = 120


@pytest.fixture
def start_worker(
    queued_settings: Settings, tiny_paths: TinyModelPaths, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `evalsvc worker` (or `python -m workers`) processes configured through EVALSVC_* only."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVALSVC_")} | {
        "EVALSVC_MODEL": str(tiny_paths.model),
        "EVALSVC_ADAPTER": str(tiny_paths.adapter),
        "EVALSVC_HEADS": str(tiny_paths.heads),
        "EVALSVC_MAX_NEW_TOKENS": "12",
        "EVALSVC_DATA_DIR": str(tmp_path),
        "EVALSVC_DATABASE_URL": str(queued_settings.database_url),
        "EVALSVC_REDIS_URL": queued_settings.redis_url,
        "EVALSVC_BULK_QUEUE": queued_settings.bulk_queue,
        "EVALSVC_BULK_BATCH_SIZE": "1",
        "EVALSVC_BULK_HEARTBEAT_TTL_S": str(HEARTBEAT_TTL_S),
        "EVALSVC_BULK_MAINTENANCE_INTERVAL_S": "1",
        "EVALSVC_BULK_JOB_RETRY_INTERVALS_S": "[0]",
    }
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(*flags: str, module: bool = False) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "workers"] if module else [str(EVALSVC), "worker"]
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*command, "--no-scheduler", *flags], env=env, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        sys.stderr.write(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}\n")


def submit(store: Store, settings: Settings, manifest: Path, shard_size: int) -> int:
    items = read_manifest(manifest, [manifest.parent]).accepted(skip_invalid=False)
    run_id = record_run(store, name="crash", mode="scores", items=items)
    assert queue_run(store, ShardQueue.from_settings(settings), run_id, shard_size) == -(-PAIRS // shard_size)
    return run_id


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # fine-grained: with the tiny model a batch of one pair takes milliseconds


def assert_exactly_once(store: Store, run_id: int) -> None:
    assert item_states(store, run_id) == {"done": PAIRS}
    assert result_count(store) == PAIRS
    with store.session() as session:
        linked = session.scalar(
            select(func.count(func.distinct(RunItem.result_id))).where(RunItem.run_id == run_id)
        )
        keys = session.scalar(select(func.count(func.distinct(Result.content_key))))
    assert linked == PAIRS and keys == PAIRS


def test_a_worker_killed_mid_shard_is_replaced_and_every_item_is_scored_once(
    queued_settings: Settings,
    store: Store,
    manifest: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    run_id = submit(store, queued_settings, manifest, shard_size=PAIRS)  # one shard of 50 batches
    first = start_worker()
    wait_until(lambda: run_progress(store, run_id).done >= 5, "the first worker to score 5 items")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    done_by_first = run_progress(store, run_id).done
    assert 5 <= done_by_first < PAIRS, "the kill must land mid-shard"
    queue = ShardQueue.from_settings(queued_settings)
    assert queue.run_jobs(run_id)["started"] == 1, "the dead worker's job still looks running"

    time.sleep(HEARTBEAT_TTL_S + 1)  # its heartbeat expires: the job is now abandoned
    second = start_worker("--burst", module=True)
    assert second.wait(timeout=TIMEOUT_S) == 0
    assert_exactly_once(store, run_id)
    with store.session() as session:
        attempts = dict(
            session.execute(
                select(RunItem.attempts, func.count())
                .where(RunItem.run_id == run_id)
                .group_by(RunItem.attempts)
            ).all()
        )
    assert attempts == {1: PAIRS}  # no item was recorded twice
    assert queue.run_jobs(run_id) == {"queued": 0, "started": 0, "scheduled": 0, "failed": 0}


def test_redis_flushed_mid_run_then_resume_finishes_the_run(
    capsys: pytest.CaptureFixture[str],
    queued_settings: Settings,
    store: Store,
    manifest: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    run_id = submit(store, queued_settings, manifest, shard_size=10)
    worker = start_worker()
    wait_until(lambda: run_progress(store, run_id).done >= 3, "the worker to score 3 items")
    Redis.from_url(queued_settings.redis_url).flushdb()  # every queued job, registry and result: gone

    # The shard in progress finishes (its items are in SQL); the other four jobs are lost.
    time.sleep(HEARTBEAT_TTL_S)
    assert run_progress(store, run_id).pending > 0
    code = main(
        ["bulk", "resume", str(run_id), "--shard-size", "10", "--database-url", str(queued_settings.database_url),
         "--redis-url", queued_settings.redis_url, "--queue", queued_settings.bulk_queue]
    )  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["queued_jobs"] >= 1
    wait_until(lambda: run_progress(store, run_id).pending == 0, "the resumed run to finish")
    assert worker.poll() is None, "the worker survived the flush and worked the resumed jobs"
    assert_exactly_once(store, run_id)
    assert run_progress(store, run_id).status == "done"
