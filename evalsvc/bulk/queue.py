"""RQ as the transport of shard jobs: enqueue once per shard, remove queued ones on cancel.

Redis holds no state that cannot be rebuilt: a job carries only `(run_id, first_item_id,
last_item_id)` and its id is derived from them (`Shard.job_id`), so losing Redis loses nothing that
`evalsvc bulk resume` cannot enqueue again from SQL. Results are written to SQL inside the job; the
job's own return value (a count summary) may expire.

Every job gets the time limit, the retry policy and the function path from `Settings`:

- `timeout`: `bulk_job_timeout_s`; a job that overruns fails and is retried like any failure;
- `retry`: `Retry(bulk_job_retries, bulk_job_retry_intervals_s)` covers a job that raised (a
  transient failure outlasting the in-shard retries) and a job whose worker died (RQ's abandoned-job
  handling re-enqueues it once its heartbeat expires). Intervals need RQ's scheduler, which
  `evalsvc worker` runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus

from evalsvc.bulk.shards import Shard, job_id_prefix
from evalsvc.errors import QueueUnavailable
from evalsvc.settings import Settings

JOB_FUNCTION = "workers.jobs.score_shard"
_LIVE = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED})
_WAITING = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})
_CONNECT_TIMEOUT_S = 5


def connect_redis(url: str) -> Redis:
    """A Redis connection for the bulk queue, checked with a PING so a wrong URL fails here, clearly."""
    connection = Redis.from_url(url, socket_connect_timeout=_CONNECT_TIMEOUT_S)
    with redis_errors(url):
        connection.ping()
    return connection


@contextmanager
def redis_errors(url: str) -> Iterator[None]:
    try:
        yield
    except RedisError as error:
        raise QueueUnavailable(f"the bulk queue's Redis at {_safe(url)} is unavailable: {error}") from error


def _safe(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


class ShardQueue:
    """The queue of one deployment (`Settings.bulk_queue` on `Settings.redis_url`)."""

    def __init__(self, connection: Redis, settings: Settings) -> None:
        self.connection = connection
        self.settings = settings
        self.queue = Queue(settings.bulk_queue, connection=connection)

    @classmethod
    def from_settings(cls, settings: Settings) -> ShardQueue:
        return cls(connect_redis(settings.redis_url), settings)

    def ping(self) -> None:
        """Raise `QueueUnavailable` unless Redis answers now."""
        with redis_errors(self.settings.redis_url):
            self.connection.ping()

    def enqueue(self, shards: Iterable[Shard]) -> int:
        """Enqueue every shard that has no live job yet; returns how many were enqueued.

        A live job (queued, running, scheduled for a retry) is left alone. A finished, failed or
        cancelled one is replaced: its shard still has pending items, or it would not be asked for.
        """
        enqueued = 0
        with redis_errors(self.settings.redis_url):
            for shard in shards:
                job = self._fetch(shard)
                if job is not None and job.get_status(refresh=False) in _LIVE:
                    continue
                if job is not None:
                    job.delete()
                try:
                    self._enqueue(shard)
                except DuplicateJobError:
                    continue  # enqueued by a concurrent submit or resume: it is live, as wanted
                enqueued += 1
        return enqueued

    def cancel(self, run_id: int) -> int:
        """Delete the run's jobs that have not started; running ones stop before their next batch.

        Found by their id prefix, so it needs no knowledge of how the run was cut into shards.
        """
        removed = 0
        with redis_errors(self.settings.redis_url):
            found = self._run_job_ids(run_id)
            for job in Job.fetch_many(found["queued"] + found["scheduled"], connection=self.connection):
                if job is not None and job.get_status(refresh=False) in _WAITING:
                    job.delete()
                    removed += 1
        return removed

    def run_jobs(self, run_id: int) -> dict[str, int]:
        """How many of the run's shard jobs Redis holds in each state. A run with pending items and
        no queued, started or scheduled job needs `bulk resume` (Redis lost them, or retries ran out)."""
        with redis_errors(self.settings.redis_url):
            return {state: len(ids) for state, ids in self._run_job_ids(run_id).items()}

    def _run_job_ids(self, run_id: int) -> dict[str, list[str]]:
        prefix = job_id_prefix(self.settings.bulk_queue, run_id)
        queue = self.queue
        found = {
            "queued": queue.get_job_ids(),
            # Read without RQ's cleanup, which would act on abandoned jobs as a side effect.
            "started": queue.started_job_registry.get_job_ids(cleanup=False),
            "scheduled": queue.scheduled_job_registry.get_job_ids(cleanup=False),
            "failed": queue.failed_job_registry.get_job_ids(cleanup=False),
        }
        return {state: [i for i in ids if i.startswith(prefix)] for state, ids in found.items()}

    def job_id(self, shard: Shard) -> str:
        return shard.job_id(self.settings.bulk_queue)

    def _fetch(self, shard: Shard) -> Job | None:
        return Job.fetch_many([self.job_id(shard)], connection=self.connection)[0]

    def _enqueue(self, shard: Shard) -> Job:
        settings = self.settings
        retry = (
            Retry(max=settings.bulk_job_retries, interval=settings.bulk_job_retry_intervals_s or 0)
            if settings.bulk_job_retries
            else None
        )
        return self.queue.enqueue_call(
            JOB_FUNCTION,
            args=(shard.run_id, shard.first_item_id, shard.last_item_id),
            timeout=settings.bulk_job_timeout_s,
            retry=retry,
            job_id=self.job_id(shard),
            description=str(shard),
            unique=True,
        )
