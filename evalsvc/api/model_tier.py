"""The hand-off between the API servers and LitServe's model workers.

`ScoringTask` (a decoded pair, its mode and tenant) goes into LitServe's request queue; the worker's
batch loop collects tasks into dynamic batches, and one answer comes back per task: an
`evalsvc.scoring.ScoredPair`, or the `EvalsvcError` that failed that task alone. Both sides are
plain picklable values.

`ModelTier.score` puts a task on the queue and awaits its answer with a deadline. It does what
LitServe 0.2.19's `RegularRequestHandler` does (same queue item, same response buffer), minus the
parts that do not fit: it always removes its response-buffer entry (also on timeout), maps LitServe's
own queue timeout to `ScoringTimeout`, and never turns an error into an opaque 500 with an HTML body.
It uses the server's request queues and response buffer, which are not public API: litserve is pinned
below 0.3 in pyproject.toml, and tests/api/test_api_server.py exercises this path end to end.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
import uuid
from dataclasses import dataclass

from litserve import LitServer
from litserve.utils import LitAPIStatus, ResponseBufferItem
from starlette.concurrency import run_in_threadpool

from evalsvc.engine.types import AudioPair
from evalsvc.errors import EvalsvcError, ScoringTimeout
from evalsvc.scoring import ScoredPair
from evalsvc.settings import Mode

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringTask:
    """One validated pair for the model tier."""

    tenant_id: int
    mode: Mode
    pair: AudioPair


class ModelTier:
    def __init__(self, server: LitServer, api_path: str) -> None:
        self._server = server
        self._api_path = api_path

    async def score(self, task: ScoringTask, timeout_s: float) -> ScoredPair | EvalsvcError:
        """Queue the task for a model batch and wait for its answer, at most `timeout_s` seconds."""
        server = self._server
        uid = uuid.uuid4().hex
        event = asyncio.Event()
        server.response_buffer[uid] = ResponseBufferItem(event=event)
        try:
            queue = server._get_request_queue(self._api_path)
            # A manager-queue put pickles the decoded audio (up to ~4 MB): off the event loop.
            await run_in_threadpool(queue.put, (server.app.response_queue_id, uid, time.monotonic(), task))
            await asyncio.wait_for(event.wait(), timeout_s)
            response, status = server.response_buffer[uid].response
        except TimeoutError:
            raise ScoringTimeout(
                f"scoring took longer than {timeout_s:g} s (EVALSVC_REQUEST_TIMEOUT_S)"
            ) from None
        finally:
            server.response_buffer.pop(uid, None)
        if status == LitAPIStatus.ERROR:
            raise _error_from_worker(response)
        assert isinstance(response, ScoredPair | EvalsvcError), type(response)
        return response


def _error_from_worker(response: object) -> EvalsvcError:
    """LitServe reports its queue timeout as an HTTPException(504); anything else (a worker died, a
    bug) is the base `EvalsvcError`: 500 internal_error, logged here."""
    error = response
    if isinstance(response, bytes):
        try:
            error = pickle.loads(response)
        except Exception:  # a pickled exception whose class cannot be rebuilt here
            error = None
    if getattr(error, "status_code", None) == 504:
        return ScoringTimeout("the request waited too long for a model worker (EVALSVC_REQUEST_TIMEOUT_S)")
    logger.error("model worker failed: %r", error)
    return EvalsvcError("the model worker failed on this request; it has been logged")
