"""The RQ job function of bulk runs and the per-process state it runs with.

A worker process installs its `ShardContext` once (`install`), with the model loaded or the model
tier's client ready, and every job reuses it. The job's arguments are only the shard's three numbers;
everything else comes from SQL. A process that never installed a context (a plain `rq worker`
pointed at the queue) builds one from `Settings()` on its first job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from evalsvc.bulk.processing import ShardContext, process_shard
from evalsvc.bulk.scorers import build_item_scorer
from evalsvc.bulk.shards import Shard
from evalsvc.settings import Settings
from evalsvc.store import Store

_context: ShardContext | None = None
_heartbeat: Callable[[], None] | None = None


def install(context: ShardContext | None) -> None:
    """Make `context` the one every job of this process uses (None: build one on the next job)."""
    global _context
    _context = context


@contextmanager
def heartbeat(send: Callable[[], None]) -> Iterator[None]:
    """Have the running job call `send` after each batch and before each retry wait (set by
    `ShardWorker` around each job)."""
    global _heartbeat
    _heartbeat = send
    try:
        yield
    finally:
        _heartbeat = None


def score_shard(run_id: int, first_item_id: int, last_item_id: int) -> dict[str, int | bool]:
    """Score one shard; the return value is a summary only (the results are in SQL already)."""
    report = process_shard(_current_context(), Shard(run_id, first_item_id, last_item_id), heartbeat=_beat)
    return report.to_dict()


def _beat() -> None:
    if _heartbeat is not None:
        _heartbeat()


def _current_context() -> ShardContext:
    if _context is None:
        settings = Settings()
        store = Store.from_settings(settings)
        install(
            ShardContext.from_settings(settings, store, build_item_scorer(settings, store, load_now=True))
        )
    assert _context is not None
    return _context
