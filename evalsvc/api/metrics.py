"""Prometheus metrics that are correct across LitServe's processes.

LitServe serves HTTP from several forked API-server processes and scores in spawned model workers; a
per-process registry would answer `/metrics` with whichever process's numbers the scrape happened to
reach. Every metric here therefore lives in one block of shared memory (a `RawArray` of doubles and a
lock, created by the main process before it forks or spawns anything, from the spawn context so the
workers can inherit it too): API servers add request counts and latencies, model workers add batch
sizes and model time, and any process renders the same totals. The `endpoint` label is the route
template (`/v1/results/{result_id}`) of the app's routes, fixed when the server is built, and
`other` for a path no route matches; statuses come from a fixed list. So the block has a fixed size
and fuzzed URLs cannot grow it.

No Redis and no files: the serving path gets no new dependency, and nothing needs cleaning up after a
crash. The cost is that label values are known up front, which suits a service's few routes.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OTHER = "other"
STATUSES: tuple[str, ...] = (
    "200", "201", "400", "401", "404", "405", "408", "413", "415", "422", "429", "499", "500", "503",
    "504", "other",
)  # fmt: skip
CLIENT_CLOSED = 499
"""nginx's status for a request whose client hung up before the answer was sent: not a server error."""
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class _Histogram:
    """Layout of one histogram in the block: one slot per bucket (+Inf last), then sum, then count."""

    offset: int
    buckets: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.buckets) + 3

    def slot(self, value: float) -> int:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                return self.offset + index
        return self.offset + len(self.buckets)


class SharedMetrics:
    """All counters and histograms of the service, in memory shared by every process."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        self.endpoints: tuple[str, ...] = (*dict.fromkeys(endpoints), OTHER)
        pairs = len(self.endpoints) * len(STATUSES)
        self._request_latency = [
            _Histogram(pairs + i * (len(LATENCY_BUCKETS) + 3), LATENCY_BUCKETS) for i in range(pairs)
        ]
        offset = self._request_latency[-1].offset + self._request_latency[-1].size
        self._batch_size = _Histogram(offset, BATCH_BUCKETS)
        self._model_seconds = _Histogram(self._batch_size.offset + self._batch_size.size, LATENCY_BUCKETS)
        self._cache_hits = self._model_seconds.offset + self._model_seconds.size
        self._cache_misses = self._cache_hits + 1
        self._pair_errors = self._cache_misses + 1
        context = multiprocessing.get_context("spawn")
        self._values = context.RawArray("d", self._pair_errors + 1)
        self._lock = context.Lock()

    # --- recording ---------------------------------------------------------------------------
    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        index = _index(self.endpoints, endpoint) * len(STATUSES) + _index(STATUSES, str(status))
        with self._lock:
            self._values[index] += 1
            self._observe(self._request_latency[index], seconds)

    def observe_batch_size(self, size: int) -> None:
        with self._lock:
            self._observe(self._batch_size, size)

    def observe_model_seconds(self, seconds: float) -> None:
        with self._lock:
            self._observe(self._model_seconds, seconds)

    def count_pairs(self, *, cache_hits: int = 0, cache_misses: int = 0, errors: int = 0) -> None:
        with self._lock:
            self._values[self._cache_hits] += cache_hits
            self._values[self._cache_misses] += cache_misses
            self._values[self._pair_errors] += errors

    def _observe(self, histogram: _Histogram, value: float) -> None:
        self._values[histogram.slot(value)] += 1
        self._values[histogram.offset + len(histogram.buckets) + 1] += value
        self._values[histogram.offset + len(histogram.buckets) + 2] += 1

    # --- exposition --------------------------------------------------------------------------
    def render(self, in_flight: int) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            values = list(self._values)
        lines = [
            "# HELP evalsvc_http_requests_total HTTP requests answered, by endpoint and status.",
            "# TYPE evalsvc_http_requests_total counter",
        ]
        answered = [
            (endpoint, status, e * len(STATUSES) + s)
            for e, endpoint in enumerate(self.endpoints)
            for s, status in enumerate(STATUSES)
            if values[e * len(STATUSES) + s] > 0
        ]
        lines += [
            f'evalsvc_http_requests_total{{endpoint="{endpoint}",status="{status}"}} {_number(values[index])}'
            for endpoint, status, index in answered
        ]
        lines += [
            "# HELP evalsvc_http_request_duration_seconds Time to answer, by endpoint and status.",
            "# TYPE evalsvc_http_request_duration_seconds histogram",
        ]
        for endpoint, status, index in answered:
            labels = f'endpoint="{endpoint}",status="{status}"'
            lines += _histogram_lines(
                "evalsvc_http_request_duration_seconds", labels, self._request_latency[index], values
            )
        lines += [
            "# HELP evalsvc_batch_size Requests per dynamic batch handed to a model worker.",
            "# TYPE evalsvc_batch_size histogram",
            *_histogram_lines("evalsvc_batch_size", "", self._batch_size, values),
            "# HELP evalsvc_model_seconds Engine time (features and model) per engine call.",
            "# TYPE evalsvc_model_seconds histogram",
            *_histogram_lines("evalsvc_model_seconds", "", self._model_seconds, values),
            "# HELP evalsvc_cache_hits_total Pairs answered from the store without running the model.",
            "# TYPE evalsvc_cache_hits_total counter",
            f"evalsvc_cache_hits_total {_number(values[self._cache_hits])}",
            "# HELP evalsvc_cache_misses_total Pairs that ran through the model.",
            "# TYPE evalsvc_cache_misses_total counter",
            f"evalsvc_cache_misses_total {_number(values[self._cache_misses])}",
            "# HELP evalsvc_pair_errors_total Pairs that failed on their own in a batch.",
            "# TYPE evalsvc_pair_errors_total counter",
            f"evalsvc_pair_errors_total {_number(values[self._pair_errors])}",
            "# HELP evalsvc_in_flight Scoring requests being served now.",
            "# TYPE evalsvc_in_flight gauge",
            f"evalsvc_in_flight {in_flight}",
        ]
        return "\n".join(lines) + "\n"


def _index(names: Sequence[str], name: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        return len(names) - 1  # "other"


def _histogram_lines(name: str, labels: str, histogram: _Histogram, values: list[float]) -> list[str]:
    prefix = f"{labels}," if labels else ""
    lines = []
    cumulative = 0.0
    for index, bound in enumerate((*histogram.buckets, float("inf"))):
        cumulative += values[histogram.offset + index]
        le = "+Inf" if bound == float("inf") else _number(bound)
        lines.append(f'{name}_bucket{{{prefix}le="{le}"}} {_number(cumulative)}')
    braces = f"{{{labels}}}" if labels else ""
    total = values[histogram.offset + len(histogram.buckets) + 1]
    count = values[histogram.offset + len(histogram.buckets) + 2]
    lines += [f"{name}_sum{braces} {total!r}", f"{name}_count{braces} {_number(count)}"]
    return lines


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route a request is for (also when a middleware answered before routing)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            return str(getattr(route, "path", OTHER))
    return OTHER


class RequestMetricsMiddleware:
    """Counts and times every HTTP answer by endpoint and status (outermost: sees 401s, 413s, 429s).

    A request whose client hung up before the answer was complete counts as 499, whatever the app
    then tried to answer (FastAPI calls a body cut short "There was an error parsing the body", 400;
    a route reading it itself gets `ClientDisconnect`): 5xx alerts are for the server's faults.
    """

    def __init__(self, app: ASGIApp, metrics: SharedMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        complete = client_gone = False

        async def capture(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True  # before sending: a disconnect noticed from here on is no hang-up
            await send(message)

        async def watch() -> Message:
            nonlocal client_gone
            message = await receive()
            client_gone = client_gone or (message["type"] == "http.disconnect" and not complete)
            return message

        try:
            await self.app(scope, watch, capture)
        finally:
            endpoint = route_template(self.router.routes, scope)
            answered = CLIENT_CLOSED if client_gone else status
            self.metrics.observe_request(endpoint, answered, time.perf_counter() - started)
