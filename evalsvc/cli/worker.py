"""`evalsvc worker` (also `python -m evalsvc worker`): score bulk-run shards from the RQ queue.

One worker is one process on one queue with the model loaded once, at start (or, with
`EVALSVC_MODEL_URL`, a client of `evalsvc serve`); run several for throughput. See
`evalsvc.bulk.rq_worker` for why it is an RQ `SimpleWorker` and how a worker that dies mid-shard has its job retried.
"""

from __future__ import annotations

import argparse
import logging

from evalsvc.cli.bulk import bulk_settings
from evalsvc.cli.common import EXIT_OK, add_model_options, add_store_options
from evalsvc.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "worker",
        help="work the bulk queue: score shards of submitted runs",
        description="An RQ worker for `evalsvc bulk submit`: loads the model once (or uses "
        "EVALSVC_MODEL_URL), then scores shard jobs in batches until stopped (SIGTERM: after the "
        "current job).",
    )
    parser.add_argument("--burst", action="store_true", help="quit once the queue is empty")
    parser.add_argument("--name", help="worker name (default: random)")
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not run RQ's scheduler (which re-queues jobs whose retry interval has passed)",
    )
    group = parser.add_argument_group("queue (override EVALSVC_* settings)")
    group.add_argument("--redis-url", help="Redis of the bulk queue (EVALSVC_REDIS_URL)")
    group.add_argument("--queue", help="RQ queue name (EVALSVC_BULK_QUEUE)")
    group.add_argument("--batch-size", type=int, help="pairs per model call (EVALSVC_BULK_BATCH_SIZE)")
    group.add_argument("--model-url", help="score through `evalsvc serve` at this URL (EVALSVC_MODEL_URL)")
    add_model_options(parser)
    add_store_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from evalsvc.bulk.rq_worker import run_worker  # rq's worker machinery is needed by this command only

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run_worker(
        bulk_settings(args, settings), burst=args.burst, with_scheduler=not args.no_scheduler, name=args.name
    )
    return EXIT_OK
