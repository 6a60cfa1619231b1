"""`ShardWorker` and `run_worker`: one process, one queue, one model, many shard jobs (`evalsvc worker`).

Why a `SimpleWorker`: the model must be loaded once per worker process and kept across jobs. RQ's
forking `Worker` runs each job in a fresh fork: a model loaded in the fork dies with it (a reload per
job), and one loaded in the parent before forking cannot be used on the GPU (CUDA does not survive
`fork`). `SpawnWorker` starts a new interpreter per job. `SimpleWorker` runs jobs in the worker
process itself, so the engine loaded at start serves every job. What it lacks is the heartbeat a
forking worker sends while it waits for its child; here the shard function sends one after every
batch instead, with a short TTL, so a worker killed mid-shard has its job put back within
`bulk_heartbeat_ttl_s` + `bulk_maintenance_interval_s` rather than after the whole job timeout.

With `EVALSVC_MODEL_URL` the worker holds no model at all: it sends pairs to `evalsvc serve` (the
GPU stays in the LitServe tier) and the same worker class serves, as light as an HTTP client.

What `ShardWorker` changes in `SimpleWorker`:

- the execution's heartbeat TTL is `bulk_heartbeat_ttl_s` (RQ's `SimpleWorker` uses the whole job
  timeout plus 60 s, since it cannot heartbeat during a job), and the job calls `maintain_heartbeats`
  after every batch (through `evalsvc.bulk.jobs.heartbeat`), which refreshes the worker key, the execution
  and the job's entry in the started-job registry;
- abandoned jobs are looked for every `bulk_maintenance_interval_s` by a thread of their own, busy or
  idle: RQ looks only between jobs (never during a long shard) and, idle, only between its blocking
  waits on the queue (405 s with its default worker TTL, here shortened to the interval too, so an
  idle worker also takes over the scheduler of a dead one within an interval);
- an abandoned job is put straight back (`requeue_abandoned`), not counted as a failed attempt;
- a job that failed for a configuration error (its run is not in this worker's database, the model
  tier refuses the worker's key) is not retried: every retry would meet the same configuration;
- a job queued under the job path of earlier releases (`workers.jobs.score_shard`, before the worker
  moved into `evalsvc.bulk`) still runs (`ShardJob`); drop the alias once no such job can be queued.

A worker that dies (SIGKILL, OOM, a lost node) stops heartbeating; within `bulk_heartbeat_ttl_s` +
`bulk_maintenance_interval_s` any other worker of the queue puts its job back, at the front, and the
job resumes from the shard's pending items. The RQ scheduler child this worker starts is told to stop
when the worker dies (`evalsvc.lifetime`), so it does not hold the scheduler lock for a dead worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, worker_registration
from rq.job import Job
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ReadyJobRegistry,
)
from rq.utils import import_attribute, now
from rq.worker import WorkerStatus

from evalsvc.bulk import jobs
from evalsvc.bulk.processing import ShardContext
from evalsvc.bulk.queue import LEGACY_JOB_FUNCTIONS, connect_redis, requeue_abandoned
from evalsvc.bulk.scorers import build_item_scorer
from evalsvc.errors import ConfigurationError
from evalsvc.lifetime import children_exit_with_this_process
from evalsvc.settings import Settings
from evalsvc.store import Store

logger = logging.getLogger(__name__)


class ShardJob(Job):
    """An RQ job whose function path may be one of an earlier release (`LEGACY_JOB_FUNCTIONS`).

    RQ stores the function as a dotted path and imports it when the job runs: without this, a job
    queued before an upgrade would fail with an import error in the new worker.
    """

    @property
    def func(self) -> Callable[..., object]:
        current = LEGACY_JOB_FUNCTIONS.get(self.func_name or "")
        return import_attribute(current) if current is not None else super().func


class ShardWorker(SimpleWorker):
    def __init__(self, *args: object, heartbeat_ttl_s: int, max_worker_deaths: int, **kwargs: object) -> None:
        kwargs.setdefault("job_class", ShardJob)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.max_worker_deaths = max_worker_deaths

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_ttl_s

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes up every maintenance interval (RQ's default: every 405 s) for RQ's
        maintenance: registry cleaning, and taking over the scheduler of a worker that is gone."""
        return max(1, min(super().dequeue_timeout, self.maintenance_interval))

    def execute_job(self, job: Job, queue: Queue) -> None:
        """`SimpleWorker.execute_job`, with the per-batch heartbeat made available to the job."""
        execution = self.prepare_execution(job)
        with jobs.heartbeat(lambda: self.maintain_heartbeats(job, execution)):
            self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def handle_exception(
        self, job: Job, *exc_info: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        """RQ calls this before it decides on a retry: a configuration error gets none."""
        if isinstance(exc_info[1], ConfigurationError):
            job.retries_left = None
        super().handle_exception(job, *exc_info)

    def work(self, *args: object, **kwargs: object) -> bool:
        """RQ's work loop, beside a thread that looks for abandoned jobs every maintenance interval."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._maintain, args=(stop,), name="evalsvc-maintenance", daemon=True
        )
        thread.start()
        try:
            return super().work(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            stop.set()
            thread.join(timeout=10)

    def _maintain(self, stop: threading.Event) -> None:
        while not stop.wait(self.maintenance_interval):
            try:
                self._clean_queue_registries()
            except RedisError as error:  # Redis away: the main loop reports it; try again next time
                logger.warning("worker %s: registry cleaning failed: %s", self.name, error)
            except Exception:  # whatever it was, the next interval must still look for dead workers
                logger.exception("worker %s: registry cleaning failed", self.name)

    def clean_registries(self) -> None:
        """RQ's `clean_registries` (part of its maintenance, which the main loop runs between jobs)."""
        self._clean_queue_registries()
        self.last_cleaned_at = now()

    def _clean_queue_registries(self) -> None:
        """RQ's registry cleaning, with abandoned jobs put back rather than retried or failed.

        One worker of the queue cleans at a time; the lock expires after one interval (RQ's lasts
        15 minutes: a worker killed while holding it would stop every recovery for that long). It
        leaves `last_cleaned_at` alone: that paces the rest of RQ's maintenance in the main loop.
        """
        for queue in self.queues:
            if not self.connection.set(
                queue.registry_cleaning_key, self.name, nx=True, ex=self.maintenance_interval
            ):
                continue
            try:
                requeue_abandoned(queue, self.max_worker_deaths)
                for registry in (
                    FinishedJobRegistry,
                    FailedJobRegistry,
                    DeferredJobRegistry,
                    ReadyJobRegistry,
                ):
                    registry(queue.name, connection=queue.connection, job_class=queue.job_class,
                             serializer=queue.serializer).cleanup()  # fmt: skip
                worker_registration.clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
            finally:
                queue.release_maintenance_lock()


def run_worker(
    settings: Settings, *, burst: bool = False, with_scheduler: bool = True, name: str | None = None
) -> bool:
    """Check the database, load the model (or reach the model tier), then work the bulk queue; True
    if any job ran.

    The database is checked first, so a worker that could not record anything never says it is ready
    (`StoreUnavailable`, or `StoreSchemaOutdated`, is raised instead). `burst` stops when the queue is
    empty. The scheduler (one per queue, whichever worker takes its lock) moves jobs whose retry
    interval has passed back onto the queue.
    """
    store = Store.from_settings(settings)
    store.check()
    connection = connect_redis(settings.redis_url)
    scorer = build_item_scorer(settings, store, load_now=True)
    jobs.install(ShardContext.from_settings(settings, store, scorer))
    worker = ShardWorker(
        [settings.bulk_queue],
        name=name,
        connection=connection,
        heartbeat_ttl_s=settings.bulk_heartbeat_ttl_s,
        max_worker_deaths=settings.bulk_job_max_worker_deaths,
        maintenance_interval=settings.bulk_maintenance_interval_s,
    )
    children_exit_with_this_process()  # the scheduler RQ forks must not outlive this worker
    logger.info(
        "worker %s ready on queue %s, database %s",
        worker.name, settings.bulk_queue, store.url.render_as_string(hide_password=True),
    )  # fmt: skip
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
