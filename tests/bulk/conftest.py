"""Fixtures of the bulk tests: a real Redis database and a real PostgreSQL database per test.

Redis is found at TEST_REDIS_URL (default 127.0.0.1:6379); each test module claims a database of its
own there (`tests.redis_databases`), flushed before and after each test; PostgreSQL at TEST_POSTGRES_URL (a database is created per test and dropped after). When
either is unreachable the tests that need it are skipped, except in CI (CI=true), where that fails.

`work` runs an RQ worker of the bulk queue in the test process (`ShardWorker.work(burst=True)` with
the session's engine): the real RQ machinery, without a model load per test.

`pairs_dir` holds 50 distinct spoken pairs (synthetic tones: 10 queries x 5 responses), so a run of
it produces 50 distinct results; `manifest` lists them.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select

from evalsvc.audio import AudioLimits
from evalsvc.bulk import jobs
from evalsvc.bulk.processing import ShardContext
from evalsvc.bulk.rq_worker import ShardWorker
from evalsvc.bulk.scorers import LocalItemScorer
from evalsvc.engine.engine import Engine
from evalsvc.scoring import ResultCache
from evalsvc.settings import Settings
from evalsvc.store import Result, RunItem, Store
from evalsvc.store.scratch import scratch_postgres
from tests.helpers import running_in_ci
from tests.redis_databases import REDIS_BASE_URL, NoFreeRedisDatabase, claimed_redis_database

QUERIES, RESPONSES = 10, 5
PAIRS = QUERIES * RESPONSES
SMALL = 20


def _unavailable(reason: str) -> None:
    if running_in_ci():
        pytest.fail(f"{reason} (CI=true: the bulk tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def module_redis_url() -> Iterator[str]:
    """A Redis database of this test module's own, or a skip (a failure in CI)."""
    try:
        with claimed_redis_database() as url:
            yield url
    except (RedisError, NoFreeRedisDatabase) as error:  # refused, unknown host, auth, all claimed
        _unavailable(f"Redis at {REDIS_BASE_URL} is unusable: {error}")


@pytest.fixture
def redis_url(module_redis_url: str) -> Iterator[str]:
    connection = Redis.from_url(module_redis_url, socket_connect_timeout=3)
    connection.flushdb()
    yield module_redis_url
    connection.flushdb()
    connection.close()


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped after the test."""
    with scratch_postgres(postgres_admin_url, prefix="evalsvc_bulk") as url:
        yield url


@pytest.fixture(scope="session")
def pairs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    for index in range(QUERIES):
        write_tone(root / f"q{index}.wav", 1.0 + index * 0.05, 200.0 + 20 * index)
    for index in range(RESPONSES):
        write_tone(root / f"r{index}.flac", 1.2 + index * 0.05, 500.0 + 35 * index)
    rows = [
        {
            "id": f"item-{q:02d}-{r}",
            "query_audio": f"q{q}.wav",
            "response_audio": f"r{r}.flac",
            "system": f"system-{r}",
            "dataset": "tones",
            "query_emotion": ["sad", "angry"][q % 2],
        }
        for q in range(QUERIES)
        for r in range(RESPONSES)
    ]
    write_jsonl(root / "manifest.jsonl", rows)
    return root


@pytest.fixture
def manifest(pairs_dir: Path) -> Path:
    return pairs_dir / "manifest.jsonl"


@pytest.fixture
def small_manifest(pairs_dir: Path) -> Path:
    """The first SMALL rows of `manifest`, for tests about something other than volume."""
    path = pairs_dir / "small.jsonl"
    path.write_text("".join((pairs_dir / "manifest.jsonl").read_text().splitlines(keepends=True)[:SMALL]))
    return path


@pytest.fixture
def bulk_settings(tiny_settings: Settings, database_url: str, pairs_dir: Path) -> Settings:
    """The tiny model on PostgreSQL, small shards and batches, no backoff; Redis unreachable (port 1),
    so a test that needs no Redis proves it."""
    return tiny_settings.model_copy(
        update={
            "database_url": database_url,
            "redis_url": "redis://127.0.0.1:1/0",
            "data_roots": [pairs_dir],
            "bulk_shard_size": 10,
            "bulk_batch_size": 4,
            "bulk_job_retry_intervals_s": [0],
            "bulk_backoff_s": 0.0,
        }
    )


@pytest.fixture
def queued_settings(bulk_settings: Settings, redis_url: str) -> Settings:
    """`bulk_settings` with the test Redis and a queue of the test's own (another test session
    sharing the Redis database then never sees its jobs)."""
    return bulk_settings.model_copy(
        update={"redis_url": redis_url, "bulk_queue": f"test-{uuid.uuid4().hex[:8]}"}
    )


@pytest.fixture
def store(bulk_settings: Settings) -> Iterator[Store]:
    opened = Store.from_settings(bulk_settings)
    yield opened
    opened.dispose()


@pytest.fixture
def work(queued_settings: Settings, store: Store, engine: Engine) -> Iterator[Callable[[], bool]]:
    """Run an RQ worker of the bulk queue in this process until the queue is empty."""
    jobs.install(
        ShardContext.from_settings(
            queued_settings, store, LocalItemScorer(engine, ResultCache(store), AudioLimits())
        )
    )
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run() -> bool:
        worker = ShardWorker(
            [queued_settings.bulk_queue],
            connection=Redis.from_url(queued_settings.redis_url),
            heartbeat_ttl_s=30,
            max_worker_deaths=queued_settings.bulk_job_max_worker_deaths,
        )
        try:
            return worker.work(burst=True, with_scheduler=False)
        finally:
            for sig, handler in handlers.items():  # rq installs its own; give pytest its Ctrl-C back
                signal.signal(sig, handler)

    yield run
    jobs.install(None)


def write_tone(path: Path, seconds: float, frequency: float) -> None:
    t = np.arange(int(16_000 * seconds)) / 16_000
    soundfile.write(path, (0.2 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), 16_000)


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def result_count(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(Result)) or 0


def item_states(store: Store, run_id: int) -> dict[str, int]:
    with store.session() as session:
        rows = session.execute(
            select(RunItem.status, func.count()).where(RunItem.run_id == run_id).group_by(RunItem.status)
        )
        return {str(status.value): count for status, count in rows}
