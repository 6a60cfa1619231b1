"""Crashes, with real worker processes: SIGKILL mid-shard, and Redis losing everything mid-run.

Shards are made slow deterministically: one pair per model call (`EVALSVC_BULK_BATCH_SIZE=1`), so a
shard of 50 items takes 50 batches, and the tests act once SQL shows a few of them done. The heartbeat
TTL is 2 s and workers look for abandoned jobs every second, so a killed worker's job is back on the
queue within about 3 s of its last batch (`test_a_dead_workers_job_comes_back_...` measures it, with
a 5 s TTL there: a live worker starved of CPU for 2 s must not look dead to that test).
"""

from __future__ import annotations

import contextlib
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
from rq import Worker
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler
from sqlalchemy import func, select

from evalsvc.bulk.manifest import read_manifest
from evalsvc.bulk.queue import WORKER_DEATHS, ShardQueue
from evalsvc.bulk.run_operations import cancel_run, pending_shards, queue_run, record_runs, run_progress
from evalsvc.bulk.shards import Shard
from evalsvc.cli import main
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Mode, Settings
from evalsvc.store import Result, Run, RunItem, Store
from tests.bulk.conftest import PAIRS, item_states, result_count, write_jsonl, write_tone
from tests.processes import any_alive, children_of

pytestmark = pytest.mark.integration

EVALSVC = Path(sys.executable).with_name("evalsvc")
HEARTBEAT_TTL_S = 2
MAINTENANCE_INTERVAL_S = 1
LONG = 400
RECOVERY_SLACK_S = 3  # scheduling delays of a loaded 2-core machine, beyond the documented bound
TIMEOUT_S = 120


@pytest.fixture
def start_worker(
    queued_settings: Settings, tiny_paths: TinyModelPaths, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `evalsvc worker` (or `python -m evalsvc worker`) processes configured through EVALSVC_* only."""
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
        "EVALSVC_BULK_MAINTENANCE_INTERVAL_S": str(MAINTENANCE_INTERVAL_S),
        "EVALSVC_BULK_JOB_RETRY_INTERVALS_S": "[0]",
    }
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(
        *flags: str, module: bool = False, scheduler: bool = False, **overrides: str
    ) -> subprocess.Popen[bytes]:
        """`overrides`: more EVALSVC_* variables, by field name (`max_new_tokens="64"`)."""
        command = [sys.executable, "-m", "evalsvc", "worker"] if module else [str(EVALSVC), "worker"]
        if not scheduler:
            command.append("--no-scheduler")
        log = tmp_path / f"worker-{len(started)}.log"
        extra = {f"EVALSVC_{name.upper()}": value for name, value in overrides.items()}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*command, *flags], env=env | extra, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        # The whole group, also of a worker that is gone: a child it left behind must not outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        sys.stderr.write(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}\n")


def submit(store: Store, settings: Settings, manifest: Path, shard_size: int, mode: Mode = "scores") -> int:
    items = read_manifest(manifest, [manifest.parent]).accepted(skip_invalid=False)
    [run_id] = record_runs(store, name="crash", mode=mode, items=items)
    assert queue_run(store, ShardQueue.from_settings(settings), run_id, shard_size) == -(
        -len(items) // shard_size
    )
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
    assert item_attempts(store, run_id) == {1: PAIRS}  # no item was recorded twice


def item_attempts(store: Store, run_id: int) -> dict[int, int]:
    """How many items were recorded how many times (pending items have 0 attempts)."""
    with store.session() as session:
        rows = session.execute(
            select(RunItem.attempts, func.count()).where(RunItem.run_id == run_id).group_by(RunItem.attempts)
        )
        return dict(rows.all())  # type: ignore[arg-type]


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


def running_job(queue: ShardQueue, shard: Shard) -> Job:
    job = Job.fetch(queue.job_id(shard), connection=queue.connection)
    assert job.get_status() == JobStatus.STARTED
    return job


def seconds_until_back(queue: ShardQueue, job_id: str, dead_worker: str, killed_at: float) -> float:
    """Seconds from the kill until the dead worker's job is queued again or run by another worker."""

    def back() -> bool:
        job = Job.fetch(job_id, connection=queue.connection)
        status = job.get_status()
        return status == JobStatus.QUEUED or (status == JobStatus.STARTED and job.worker_name != dead_worker)

    wait_until(back, f"job {job_id} of the dead worker {dead_worker} to come back", timeout_s=60)
    return time.monotonic() - killed_at


def kill(process: subprocess.Popen[bytes]) -> float:
    os.killpg(process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    process.wait(timeout=10)
    return killed_at


@pytest.fixture
def long_manifest(tmp_path: Path) -> Path:
    """400 distinct pairs, none of them in `manifest`: with generation (`assessment`), a shard that
    keeps a worker busy for far longer than the test needs, even on a fast idle machine."""
    for index in range(20):
        write_tone(tmp_path / f"lq{index}.wav", 0.8 + index * 0.01, 250.0 + 13 * index)
        write_tone(tmp_path / f"lr{index}.wav", 0.9 + index * 0.01, 700.0 + 29 * index)
    rows = [
        {"id": f"long-{q}-{r}", "query_audio": f"lq{q}.wav", "response_audio": f"lr{r}.wav", "system": "s",
         "dataset": "long"}
        for q in range(20)
        for r in range(20)
    ]  # fmt: skip
    write_jsonl(tmp_path / "long.jsonl", rows)
    return tmp_path / "long.jsonl"


def test_a_dead_workers_job_comes_back_within_ttl_plus_interval_to_an_idle_or_a_busy_survivor(
    queued_settings: Settings,
    store: Store,
    manifest: Path,
    long_manifest: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """RQ alone looks for abandoned jobs only between jobs, and idle only every 405 s; and it would
    spend the job's one retry on the death and schedule it 600 s later. Neither may happen."""
    settings = queued_settings.model_copy(update={"bulk_job_retries": 1, "bulk_job_retry_intervals_s": [600]})
    queue = ShardQueue.from_settings(settings)
    # A TTL well above the slowest batch of a loaded machine: a live worker must not look dead here.
    ttl_s = 5
    workers = {
        name: start_worker("--name", name, bulk_heartbeat_ttl_s=str(ttl_s)) for name in ("w0", "w1", "w2")
    }
    wait_until(lambda: len(Worker.all(queue=queue.queue)) == 3, "three idle workers", timeout_s=180)
    bound = ttl_s + MAINTENANCE_INTERVAL_S

    # 1. A long shard; its worker dies while the two others are idle.
    long_run = submit(store, settings, long_manifest, shard_size=LONG, mode="assessment")
    [long_shard] = pending_shards(store, long_run, LONG)
    wait_until(lambda: run_progress(store, long_run).done >= 2, "2 items of the long shard")
    first = running_job(queue, long_shard).worker_name
    assert first is not None
    idle_s = seconds_until_back(queue, queue.job_id(long_shard), first, kill(workers.pop(first)))

    # 2. Another run's shard; its worker dies while the only survivor is busy with the long shard.
    short_run = submit(store, settings, manifest, shard_size=PAIRS)
    [short_shard] = pending_shards(store, short_run, PAIRS)
    wait_until(lambda: run_progress(store, short_run).done >= 2, "2 items of the short shard")
    second = running_job(queue, short_shard).worker_name
    assert second is not None and second != first
    [survivor] = set(workers) - {second}
    busy_s = seconds_until_back(queue, queue.job_id(short_shard), second, kill(workers.pop(second)))
    assert running_job(queue, long_shard).worker_name == survivor, "the survivor was busy all along"
    assert run_progress(store, long_run).pending > 0

    sys.stderr.write(
        f"recovery after SIGKILL (heartbeat TTL {ttl_s} s, maintenance interval {MAINTENANCE_INTERVAL_S} s): "
        f"idle survivor {idle_s:.2f} s, busy survivor {busy_s:.2f} s\n"
    )
    assert idle_s <= bound + RECOVERY_SLACK_S and busy_s <= bound + RECOVERY_SLACK_S
    for shard in (long_shard, short_shard):
        job = Job.fetch(queue.job_id(shard), connection=queue.connection)
        assert (job.retries_left, job.meta[WORKER_DEATHS]) == (1, 1), "a death is not a failed attempt"
    for run_id in (long_run, short_run):
        cancel_run(store, lambda: queue, run_id)
    wait_until(lambda: Job.fetch(queue.job_id(long_shard), connection=queue.connection).get_status() != JobStatus.STARTED, "the survivor to stop")  # fmt: skip
    for run_id in (long_run, short_run):
        assert set(item_attempts(store, run_id)) <= {0, 1}, "no item was recorded twice"


def test_a_resume_after_redis_lost_its_jobs_shares_the_running_shard_and_scores_no_item_twice(
    capsys: pytest.CaptureFixture[str],
    queued_settings: Settings,
    store: Store,
    manifest: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """Two workers, one shard of 50: one scores it, Redis is flushed, `bulk resume` queues it again
    at once and the idle worker takes it while the first is still at it."""
    queue = ShardQueue.from_settings(queued_settings)
    start_worker()
    start_worker()
    wait_until(lambda: len(Worker.all(queue=queue.queue)) == 2, "two idle workers", timeout_s=180)
    run_id = submit(store, queued_settings, manifest, shard_size=PAIRS)
    wait_until(lambda: run_progress(store, run_id).done >= 4, "4 items scored")
    queue.connection.flushdb()
    code = main(
        ["bulk", "resume", str(run_id), "--shard-size", str(PAIRS), "--database-url", str(queued_settings.database_url),
         "--redis-url", queued_settings.redis_url, "--queue", queued_settings.bulk_queue]
    )  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["queued_jobs"] == 1
    wait_until(lambda: run_progress(store, run_id).pending == 0, "the resumed run to finish")
    time.sleep(HEARTBEAT_TTL_S)  # a runner that would still write has written by now

    assert_exactly_once(store, run_id)
    with store.session() as session:
        finished_at = session.get_one(Run, run_id).finished_at
        last_write = session.scalar(select(func.max(RunItem.updated_at)).where(RunItem.run_id == run_id))
    assert finished_at is not None and last_write is not None and last_write <= finished_at


def test_a_killed_worker_leaves_no_scheduler_behind_and_another_worker_schedules(
    queued_settings: Settings, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """RQ's scheduler is a child process of one worker, holding the queue's scheduler lock; it must
    die with its worker, so that another worker's scheduler takes over."""
    connection = Redis.from_url(queued_settings.redis_url)
    lock = RQScheduler.get_locking_key(queued_settings.bulk_queue)
    workers = [start_worker(scheduler=True), start_worker(scheduler=True)]
    wait_until(lambda: len(Worker.all(connection=connection)) == 2, "two workers", timeout_s=180)
    wait_until(lambda: any(children_of(w.pid) for w in workers), "a scheduler process (a worker's child)")
    [holder] = [worker for worker in workers if children_of(worker.pid)]
    scheduler = connection.get(lock)
    children = children_of(holder.pid)

    os.kill(holder.pid, signal.SIGKILL)  # the worker alone, as the OOM killer would
    holder.wait(timeout=10)
    wait_until(lambda: not any_alive(children), "the scheduler to exit", timeout_s=15)
    wait_until(
        lambda: connection.get(lock) not in (None, scheduler), "the other worker's scheduler", timeout_s=15
    )
    [other] = [worker for worker in workers if worker is not holder]
    wait_until(lambda: bool(children_of(other.pid)), "the other worker's scheduler process")
