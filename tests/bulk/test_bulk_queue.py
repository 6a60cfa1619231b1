"""Queued runs on real Redis and PostgreSQL: submit, an RQ worker, resume, cancel, results, via the CLI.

The worker here runs in the test process (`ShardWorker.work(burst=True)` with the session's engine),
which exercises the real RQ machinery without paying for a model load per test; worker processes,
and what happens when they die, are tested in test_bulk_crash.py.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from evalsvc.audio import AudioLimits
from evalsvc.bulk import jobs
from evalsvc.bulk.manifest import read_manifest
from evalsvc.bulk.processing import ShardContext
from evalsvc.bulk.queue import WORKER_DEATHS, ShardQueue, requeue_abandoned
from evalsvc.bulk.rq_worker import ShardWorker
from evalsvc.bulk.run_operations import queue_run, record_runs
from evalsvc.bulk.scorers import LocalItemScorer
from evalsvc.bulk.shards import Shard
from evalsvc.cli import main
from evalsvc.cli.common import EXIT_CONFIG_ERROR, EXIT_OK, EXIT_USER_ERROR
from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.errors import ServiceBusy
from evalsvc.scoring import ResultCache
from evalsvc.settings import Mode, Settings
from evalsvc.store import ItemOutcome, RunItem, Store
from evalsvc.store.run_records import PendingItem
from tests.bulk.conftest import PAIRS, SMALL, item_states, result_count

pytestmark = pytest.mark.integration


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def store_flags(settings: Settings) -> list[str]:
    return ["--database-url", str(settings.database_url)]


def queue_flags(settings: Settings) -> list[str]:
    return [*store_flags(settings), "--redis-url", settings.redis_url, "--queue", settings.bulk_queue]


def model_flags(tiny_paths: TinyModelPaths) -> list[str]:
    return [
        "--model", str(tiny_paths.model), "--adapter", str(tiny_paths.adapter), "--heads", str(tiny_paths.heads),
        "--max-new-tokens", "12",
    ]  # fmt: skip


def submit(capsys: pytest.CaptureFixture[str], settings: Settings, manifest: Path) -> int:
    code, out, err = cli(
        capsys,
        "bulk",
        "submit",
        str(manifest),
        "--name",
        "tones",
        "--shard-size",
        "10",
        *queue_flags(settings),
    )
    assert code == EXIT_OK, err
    return int(out)


def test_a_submitted_run_is_scored_by_a_worker_exactly_once(
    capsys: pytest.CaptureFixture[str],
    queued_settings: Settings,
    store: Store,
    manifest: Path,
    work: Callable[[], bool],
) -> None:
    run_id = submit(capsys, queued_settings, manifest)
    queue = Queue(queued_settings.bulk_queue, connection=Redis.from_url(queued_settings.redis_url))
    name = queued_settings.bulk_queue
    assert queue.job_ids == [f"{name}-run{run_id}-items-{first}-{first + 9}" for first in range(1, 51, 10)]
    job = Job.fetch(queue.job_ids[0], connection=queue.connection)
    assert job.timeout == queued_settings.bulk_job_timeout_s
    assert job.retries_left == queued_settings.bulk_job_retries

    # Submitting again is not possible by accident (a new run), but queueing the same run again is a no-op.
    shard_queue = ShardQueue.from_settings(queued_settings)
    assert queue_run(store, shard_queue, run_id, 10) == 0 and queue.count == 5

    assert work() is True
    assert item_states(store, run_id) == {"done": PAIRS}
    assert result_count(store) == PAIRS
    assert queue.count == 0
    assert queue.finished_job_registry.count == 5
    assert Job.fetch(job.id, connection=queue.connection).return_value() == {
        "run_id": run_id, "first_item_id": 1, "last_item_id": 10, "done": 10, "failed": 0, "cancelled": False,
    }  # fmt: skip

    code, out, _ = cli(capsys, "bulk", "status", str(run_id), *queue_flags(queued_settings))
    status = json.loads(out)
    assert (code, status["status"], status["done"], status["pending"]) == (EXIT_OK, "done", PAIRS, 0)
    assert status["jobs"] == {"queued": 0, "started": 0, "scheduled": 0, "failed": 0}
    # Nothing is pending, so a resume queues nothing.
    code, out, _ = cli(capsys, "bulk", "resume", str(run_id), *queue_flags(queued_settings))
    assert code == EXIT_OK and json.loads(out)["queued_jobs"] == 0 and queue.count == 0


def test_a_job_queued_under_the_job_path_of_the_last_release_still_runs(
    queued_settings: Settings, store: Store, small_manifest: Path, work: Callable[[], bool]
) -> None:
    """Jobs queued before the worker moved into evalsvc.bulk name `workers.jobs.score_shard`, a module
    that no longer exists: the worker runs them with the job function of today (for one release)."""
    items = read_manifest(small_manifest, queued_settings.data_roots).accepted(skip_invalid=False)
    [run_id] = record_runs(store, name="queued-before-the-upgrade", mode="scores", items=items)
    queue = Queue(queued_settings.bulk_queue, connection=Redis.from_url(queued_settings.redis_url))
    queue.enqueue_call("workers.jobs.score_shard", args=(run_id, 1, SMALL), job_id=f"old-run{run_id}")
    assert importlib.util.find_spec("workers") is None  # the old package is gone
    assert work() is True
    assert item_states(store, run_id) == {"done": SMALL}
    assert queue.finished_job_registry.get_job_ids() == [f"old-run{run_id}"]


def test_bulk_run_and_bulk_submit_give_the_same_scores(
    capsys: pytest.CaptureFixture[str],
    queued_settings: Settings,
    tiny_paths: TinyModelPaths,
    manifest: Path,
    tmp_path: Path,
    work: Callable[[], bool],
) -> None:
    embedded = ["--data-dir", str(tmp_path)]  # the embedded default: a SQLite file there, no Redis
    code, out, err = cli(
        capsys,
        "bulk",
        "run",
        str(manifest),
        "--name",
        "inline",
        "--no-progress",
        *model_flags(tiny_paths),
        *embedded,
    )
    assert code == EXIT_OK, err
    inline_run = json.loads(out)
    assert (inline_run["status"], inline_run["done"]) == ("done", PAIRS)

    queued_run = submit(capsys, queued_settings, manifest)
    work()

    def scores(run_id: int, flags: list[str]) -> dict[str, dict[str, float]]:
        code, out, _ = cli(capsys, "bulk", "results", str(run_id), *flags)
        assert code == EXIT_OK
        return {row["item_key"]: row["scores"] for row in map(json.loads, out.splitlines())}

    inline_scores = scores(inline_run["id"], embedded)
    queued_scores = scores(queued_run, store_flags(queued_settings))
    assert len(inline_scores) == PAIRS and inline_scores.keys() == queued_scores.keys()
    for key, values in inline_scores.items():
        assert values == pytest.approx(queued_scores[key], abs=1e-5), key


def test_cancel_removes_queued_jobs_and_resume_reopens_the_run(
    capsys: pytest.CaptureFixture[str],
    queued_settings: Settings,
    store: Store,
    small_manifest: Path,
    work: Callable[[], bool],
) -> None:
    run_id = submit(capsys, queued_settings, small_manifest)
    code, out, _ = cli(capsys, "bulk", "cancel", str(run_id), *queue_flags(queued_settings))
    cancelled = json.loads(out)
    assert (code, cancelled["status"], cancelled["removed_jobs"]) == (EXIT_OK, "cancelled", 2)
    assert work() is False
    assert item_states(store, run_id) == {"pending": SMALL}

    code, out, _ = cli(
        capsys, "bulk", "resume", str(run_id), "--shard-size", "10", *queue_flags(queued_settings)
    )
    assert (code, json.loads(out)["status"], json.loads(out)["queued_jobs"]) == (EXIT_OK, "running", 2)
    work()
    assert item_states(store, run_id) == {"done": SMALL}


def test_resume_after_redis_lost_everything(
    capsys: pytest.CaptureFixture[str],
    queued_settings: Settings,
    store: Store,
    small_manifest: Path,
    work: Callable[[], bool],
) -> None:
    run_id = submit(capsys, queued_settings, small_manifest)
    Redis.from_url(queued_settings.redis_url).flushdb()
    assert work() is False
    code, out, err = cli(capsys, "bulk", "status", str(run_id), *queue_flags(queued_settings))
    assert json.loads(out)["jobs"]["queued"] == 0 and f"bulk resume {run_id}" in err

    code, out, _ = cli(
        capsys, "bulk", "resume", str(run_id), "--shard-size", "10", *queue_flags(queued_settings)
    )
    assert code == EXIT_OK and json.loads(out)["queued_jobs"] == 2
    work()
    assert item_states(store, run_id) == {"done": SMALL}
    assert result_count(store) == SMALL


def test_results_as_csv_and_redis_down_at_submit(
    capsys: pytest.CaptureFixture[str],
    queued_settings: Settings,
    small_manifest: Path,
    tmp_path: Path,
    work: Callable[[], bool],
) -> None:
    down = [
        *store_flags(queued_settings),
        "--redis-url",
        "redis://127.0.0.1:1/0",
        "--queue",
        queued_settings.bulk_queue,
    ]
    code, out, err = cli(
        capsys, "bulk", "submit", str(small_manifest), "--name", "t", "--shard-size", "10", *down
    )
    run_id = int(out)  # recorded and printed before queueing failed
    assert code == EXIT_CONFIG_ERROR and "queue_unavailable" in err and f"bulk resume {run_id}" in err

    code, _, _ = cli(
        capsys, "bulk", "resume", str(run_id), "--shard-size", "10", *queue_flags(queued_settings)
    )
    work()
    output = tmp_path / "results.csv"
    code, _, _ = cli(
        capsys,
        "bulk",
        "results",
        str(run_id),
        "--format",
        "csv",
        "--output",
        str(output),
        *store_flags(queued_settings),
    )
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert code == EXIT_OK and len(rows) == SMALL
    assert (
        rows[0]["item_key"] == "item-00-0" and rows[0]["status"] == "done" and rows[0]["system"] == "system-0"
    )
    assert 1.0 <= float(rows[0]["avg"]) <= 5.0 and rows[0]["error_code"] == ""


class BusyOnce:
    """An item scorer whose second call fails as the model tier would when overloaded."""

    def __init__(self, inner: LocalItemScorer) -> None:
        self.inner = inner
        self.calls = 0

    def score_items(self, items: Sequence[PendingItem], mode: Mode) -> list[ItemOutcome]:
        self.calls += 1
        if self.calls == 2:
            raise ServiceBusy("the model tier is busy")
        return self.inner.score_items(items, mode)


def test_a_job_that_fails_is_retried_by_rq_and_skips_what_was_done(
    queued_settings: Settings,
    store: Store,
    engine: Engine,
    small_manifest: Path,
    work: Callable[[], bool],
) -> None:
    # No in-shard retries: the transient failure fails the job, and RQ's Retry runs it again.
    scorer = BusyOnce(LocalItemScorer(engine, ResultCache(store), AudioLimits()))
    jobs.install(ShardContext(store, scorer, batch_size=4, batch_retries=0))
    items = read_manifest(small_manifest, [small_manifest.parent]).accepted(skip_invalid=False)
    [run_id] = record_runs(store, name="retried", mode="scores", items=items)
    queue_run(store, ShardQueue.from_settings(queued_settings), run_id, 10)  # retry interval 0
    work()
    assert item_states(store, run_id) == {"done": SMALL}
    first_job = Job.fetch(
        Shard(run_id, 1, 10).job_id(queued_settings.bulk_queue),
        connection=Redis.from_url(queued_settings.redis_url),
    )
    assert first_job.retries_left == queued_settings.bulk_job_retries - 1
    # Shard 1: batch 1-4, then the failure; shard 2: 4+4+2; shard 1 again: only 5-8 and 9-10.
    assert scorer.calls == 2 + 3 + 2
    with store.session() as session:
        assert {item.attempts for item in session.query(RunItem).filter_by(run_id=run_id)} == {1}


def test_a_job_of_a_run_missing_from_the_workers_database_fails_at_once_without_retries(
    queued_settings: Settings, work: Callable[[], bool]
) -> None:
    """A worker on another database than `bulk submit` (e.g. its own default SQLite file) says so,
    and does not burn the job's retries on a failure no retry can fix."""
    queue = ShardQueue.from_settings(queued_settings)
    shard = Shard(999, 1, 10)
    assert queue.enqueue([shard]) == 1
    work()
    job = Job.fetch(queue.job_id(shard), connection=queue.connection)
    assert job.get_status() == "failed"
    assert job.number_of_retries is None  # it ran once
    result = job.latest_result()
    assert result is not None and "RunNotInDatabase: run 999 is not in this worker's database" in str(
        result.exc_string
    )
    assert queue.run_jobs(999) == {"queued": 0, "started": 0, "scheduled": 0, "failed": 1}


def test_a_job_whose_worker_died_is_put_back_until_too_many_workers_died_running_it(
    queued_settings: Settings,
) -> None:
    """Each death puts the job back at once, spending no retry; the last allowed one fails it, so a
    pair that kills its worker cannot take every worker down in turn."""
    queue = ShardQueue.from_settings(queued_settings)
    shard = Shard(1, 1, 10)
    queue.enqueue([shard])
    doomed = ShardWorker([queue.queue], connection=queue.connection, heartbeat_ttl_s=1, max_worker_deaths=2)
    for death in (1, 2):
        job, _ = Queue.dequeue_any([queue.queue], None, connection=queue.connection)  # type: ignore[misc]
        doomed.prepare_execution(job)  # what a worker does as it starts the job ...
        doomed.prepare_job_execution(job)
        time.sleep(2.1)  # ... and then nothing: its heartbeat (TTL 1 s, whole seconds) expires
        assert requeue_abandoned(queue.queue, max_worker_deaths=2) == (1 if death == 1 else 0)
        job = Job.fetch(queue.job_id(shard), connection=queue.connection)
        assert job.meta[WORKER_DEATHS] == death and job.retries_left == queued_settings.bulk_job_retries
        if death == 1:
            assert job.get_status() == "queued" and queue.queue.get_job_ids() == [job.id]
    assert job.get_status() == "failed"
    assert queue.run_jobs(1) == {"queued": 0, "started": 0, "scheduled": 0, "failed": 1}
    job.delete()  # the dead executions are gone with it: RQ would fail here on one it still listed


def test_cli_errors(capsys: pytest.CaptureFixture[str], queued_settings: Settings, tmp_path: Path) -> None:
    code, _, err = cli(capsys, "bulk", "status", "999", *queue_flags(queued_settings))
    assert code == EXIT_USER_ERROR and "error [not_found]: no run 999" in err
    # A worker whose model cannot be loaded fails at start, before taking any job.
    code, _, err = cli(
        capsys, "worker", "--burst", "--model", str(tmp_path / "no-such-model"), *queue_flags(queued_settings)
    )
    assert code == EXIT_CONFIG_ERROR and "model_load_failed" in err
    # A worker whose database cannot be reached fails at start too, before it loads the model.
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    code, _, err = cli(
        capsys, "worker", "--burst", "--model", str(tmp_path / "no-such-model"), "--database-url", unreachable,
        "--redis-url", queued_settings.redis_url, "--queue", queued_settings.bulk_queue,
    )  # fmt: skip
    assert code == EXIT_CONFIG_ERROR and "error [database_unavailable]: database " in err
    assert "127.0.0.1:1/nowhere is unavailable" in err and "model_load_failed" not in err
