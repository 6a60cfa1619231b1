"""`ShardWorker` and `run_worker`: one process, one queue, one model, many shard jobs.

See the package docstring for why this is an RQ `SimpleWorker`. The two changes to it:

- the execution's heartbeat TTL is `bulk_heartbeat_ttl_s` (RQ's `SimpleWorker` uses the whole job
  timeout plus 60 s, since it cannot heartbeat during a job), and
- the job calls `maintain_heartbeats` after every batch (through `workers.jobs.heartbeat`), which
  refreshes the worker key, the execution and the job's entry in the started-job registry.

A worker that dies (SIGKILL, OOM, a lost node) stops heartbeating; once the TTL has passed, the next
registry cleaning by any worker of the queue (at its start, then every
`bulk_maintenance_interval_s`) treats the job as abandoned and, the job having been enqueued with a
`Retry`, puts it back on the queue. The retry re-reads the shard's pending items, so it resumes where
the dead worker left off.
"""

from __future__ import annotations

import logging

from rq import Queue, SimpleWorker
from rq.job import Job
from rq.worker import WorkerStatus

from evalsvc.bulk.processing import ShardContext
from evalsvc.bulk.queue import connect_redis
from evalsvc.bulk.scorers import build_item_scorer
from evalsvc.settings import Settings
from evalsvc.store import Store
from workers import jobs

logger = logging.getLogger(__name__)


class ShardWorker(SimpleWorker):
    def __init__(self, *args: object, heartbeat_ttl_s: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.heartbeat_ttl_s = heartbeat_ttl_s

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_ttl_s

    def execute_job(self, job: Job, queue: Queue) -> None:
        """`SimpleWorker.execute_job`, with the per-batch heartbeat made available to the job."""
        execution = self.prepare_execution(job)
        with jobs.heartbeat(lambda: self.maintain_heartbeats(job, execution)):
            self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)


def run_worker(
    settings: Settings, *, burst: bool = False, with_scheduler: bool = True, name: str | None = None
) -> bool:
    """Load the model (or reach the model tier), then work the bulk queue; True if any job ran.

    `burst` stops when the queue is empty. The scheduler (one per queue, whichever worker takes its
    lock) moves jobs whose retry interval has passed back onto the queue.
    """
    store = Store.from_settings(settings)
    connection = connect_redis(settings.redis_url)
    scorer = build_item_scorer(settings, store, load_now=True)
    jobs.install(ShardContext.from_settings(settings, store, scorer))
    worker = ShardWorker(
        [settings.bulk_queue],
        name=name,
        connection=connection,
        heartbeat_ttl_s=settings.bulk_heartbeat_ttl_s,
        maintenance_interval=settings.bulk_maintenance_interval_s,
    )
    logger.info("worker %s ready on queue %s", worker.name, settings.bulk_queue)
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
