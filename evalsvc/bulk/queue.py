"""RQ as the transport of shard jobs: enqueue once per shard, remove queued ones on cancel.

Redis holds no state that cannot be rebuilt: a job carries only `(run_id, first_item_id,
last_item_id)` and its id is derived from them (`Shard.job_id`), so losing Redis loses nothing that
`evalsvc bulk resume` cannot enqueue again from SQL. Results are written to SQL inside the job; the
job's own return value (a count summary) may expire.

Every job gets the time limit, the retry policy and the function path from `Settings`:

- `timeout`: `bulk_job_timeout_s`; a job that overruns fails and is retried like any failure;
- `retry`: `Retry(bulk_job_retries, bulk_job_retry_intervals_s)` covers a job that raised (a
  transient failure outlasting the in-shard retries). Intervals need RQ's scheduler, which
  `evalsvc worker` runs.

A job whose worker died is not a failure of the job: `requeue_abandoned` (run by every
`evalsvc worker`) puts it straight back instead of RQ's abandoned-job handling, which would spend one
of its retries and wait out a retry interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import as_text

from evalsvc.bulk.shards import Shard, job_id_prefix
from evalsvc.errors import QueueUnavailable
from evalsvc.settings import Settings

JOB_FUNCTION = "evalsvc.bulk.jobs.score_shard"
LEGACY_JOB_FUNCTIONS = {"workers.jobs.score_shard": JOB_FUNCTION}
"""Job paths of earlier releases that a worker still runs (`evalsvc.bulk.rq_worker.ShardJob`): kept for
one release after the worker moved into `evalsvc.bulk`, so jobs queued before the upgrade drain."""
_LIVE = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED})
_WAITING = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})
_CONNECT_TIMEOUT_S = 5
WORKER_DEATHS = "evalsvc_worker_deaths"  # job meta: how many workers died running this job

logger = logging.getLogger(__name__)


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


def requeue_abandoned(queue: Queue, max_worker_deaths: int) -> int:
    """Put every job of `queue` whose worker died back at the front of the queue; how many.

    A started job whose heartbeat has expired was abandoned: its worker died (SIGKILL, OOM, a lost
    node) or hung. RQ's own cleaning would count that as a failed attempt (one retry spent, then a
    wait of the retry interval, or the failed registry when none is left); here the job goes straight
    back, and the items the dead worker had claimed become claimable when their lease expires, at the
    same moment (`evalsvc.store.item_leases`). Deaths are counted apart, in the job's meta: a shard whose
    runs killed `max_worker_deaths` workers (a pair that crashes the process, say) is failed instead,
    so that it cannot take every worker down in turn; `bulk resume` queues it again.

    This replaces RQ's cleaning of the started-job registry for the queue: every expired entry is
    removed, and the one who removes it (ZREM answers 1 to one caller only) is the one who acts on
    it, so two cleaners never put a job back twice.
    """
    registry = queue.started_job_registry
    connection = queue.connection
    now = time.time()
    running = {registry.parse_job_id(entry) for entry in connection.zrangebyscore(registry.key, now, "+inf")}
    requeued = 0
    for entry in connection.zrangebyscore(registry.key, 0, now):
        if not connection.zrem(registry.key, entry):
            continue  # another cleaner took it
        job_id = registry.parse_job_id(entry)
        job = Job.fetch_many([job_id], connection=connection)[0]
        if job is None or job.get_status(refresh=False) != JobStatus.STARTED or job_id in running:
            continue  # a finished job's leftover entry, or the job runs again elsewhere already
        deaths = int(job.meta.get(WORKER_DEATHS, 0)) + 1
        job.meta[WORKER_DEATHS] = deaths
        with connection.pipeline() as pipeline:
            if deaths < max_worker_deaths:
                logger.warning(
                    "job %s: its worker %s died (no heartbeat); back on the queue (death %d of %d)",
                    job.id, job.worker_name, deaths, max_worker_deaths,
                )  # fmt: skip
                job.started_at = None
                queue.enqueue_job(job, pipeline=pipeline, at_front=True)
                requeued += 1
            else:
                message = (
                    f"{deaths} workers died running this shard job; `evalsvc bulk resume` queues it again"
                )
                logger.error("job %s: %s", job.id, message)
                job.set_status(JobStatus.FAILED, pipeline=pipeline)
                job.save(pipeline=pipeline)
                queue.failed_job_registry.add(job, ttl=job.failure_ttl, exc_string=message, pipeline=pipeline)
            # The dead execution goes too (after `enqueue_job`, which wants an empty pipeline): RQ lists
            # it for 60 s after its data expired, and deleting the job meanwhile (`bulk cancel`) would
            # fail on it ("Execution ... not found in Redis").
            Execution.from_composite_key(as_text(entry), connection).delete(job=job, pipeline=pipeline)
            pipeline.execute()
    return requeued
