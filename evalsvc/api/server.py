"""Build the LitServer: the model tier's `LitAPI`, our routes in place of LitServe's, the middlewares.

LitServe registers `/v1/score` (a raw pass-through to its queue), `/health` (which, with
`LIT_SERVER_API_KEY`, would need a key), `/` (plain text) and `/info`; FastAPI adds `/docs` and
`/redoc`, which load their assets from CDNs. All are replaced by our routes (`/info` is dropped).
Middlewares, outermost first: request metrics (they see every answer, 401, 408 and 429 included),
body deadline, payload limit (before a body is read), auth, then LitServe's GZip. The in-flight
bound is taken by the scoring route once the request is read (`limits`). The request line and
headers have their deadline in the HTTP protocol itself (`connections`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import NoReturn

from litserve import LitServer
from litserve.connector import check_cuda_with_nvidia_smi

from evalsvc import __version__
from evalsvc.api.auth import PUBLIC_PATHS, AuthMiddleware, TenantResolver
from evalsvc.api.connections import header_deadline_protocol
from evalsvc.api.docs import REPLACED_PATHS, add_docs_routes
from evalsvc.api.limits import BodyDeadlineMiddleware, PayloadLimitMiddleware
from evalsvc.api.litapi import SCORE_PATH, ScoringAPI
from evalsvc.api.metrics import RequestMetricsMiddleware, SharedMetrics
from evalsvc.api.model_tier import ModelTier
from evalsvc.api.openapi import install_openapi
from evalsvc.api.report_routes import add_report_routes
from evalsvc.api.responses import install_error_handlers
from evalsvc.api.run_routes import add_run_routes
from evalsvc.api.score_handoff import ScoreService
from evalsvc.api.score_routes import add_score_routes
from evalsvc.api.shared import SharedState
from evalsvc.engine.placement import replica_gpu_sets
from evalsvc.errors import ModelLoadError
from evalsvc.lifetime import children_exit_with_this_process
from evalsvc.scoring import ResultCache
from evalsvc.settings import Settings
from evalsvc.store import Store

_REPLACED_ROUTES = frozenset({SCORE_PATH, "/health", "/", "/info"}) | REPLACED_PATHS


def build_server(settings: Settings, shared: SharedState | None = None) -> LitServer:
    """The server and its app; `shared` (the state its processes share) is made here unless given."""
    shared = shared or SharedState(settings.max_in_flight, settings.in_flight_per_tenant)
    accelerator, gpu_sets = serving_devices(settings.device, settings.gpus_per_replica)
    server = LitServer(
        ScoringAPI(settings, shared, gpu_sets),
        accelerator=accelerator,
        # One LitServe "device" per GPU set: LitServe takes one index per worker, which the worker
        # turns back into its set (evalsvc.engine.placement.replica_device).
        devices=list(range(len(gpu_sets))) if gpu_sets else 1,
        workers_per_device=settings.workers_per_device,
        # Bounds the wait in LitServe's queue: a request whose caller got its 504 is dropped, not scored.
        timeout=settings.request_timeout_s,
    )
    app = server.app
    app.title = "evalsvc"
    app.version = __version__
    app.description = "EmpathyEval as a service: NS, WA, EU, ES scores and assessments of spoken responses."
    app.router.routes = [
        route for route in app.router.routes if getattr(route, "path", None) not in _REPLACED_ROUTES
    ]

    store = Store.from_settings(settings)  # connects lazily, in each process that uses it
    service = ScoreService(
        settings,
        shared,
        ModelTier(server, SCORE_PATH),
        ResultCache(store),
        lambda: server.workers_setup_status,
    )
    add_score_routes(app, settings, service, shared)
    add_report_routes(app, store)
    add_run_routes(app, settings, store)
    add_docs_routes(app)
    install_openapi(app, auth_enabled=settings.auth_enabled, public_paths=PUBLIC_PATHS)
    install_error_handlers(app)
    shared.metrics = SharedMetrics(str(getattr(route, "path", "")) for route in app.router.routes)
    app.add_middleware(AuthMiddleware, resolver=TenantResolver(store, auth_enabled=settings.auth_enabled))
    app.add_middleware(PayloadLimitMiddleware, max_bytes=settings.max_payload_bytes)
    app.add_middleware(
        BodyDeadlineMiddleware,
        timeout_s=settings.body_timeout_s,
        min_bytes_per_s=settings.body_min_bytes_per_s,
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=shared.metrics, router=app.router)
    return server


def serving_devices(device: str, gpus_per_replica: int) -> tuple[str, list[tuple[int, ...]]]:
    """Settings.device as LitServe's accelerator and the GPU sets of the model workers (none off CUDA).

    'auto' and 'cuda' mean every GPU nvidia-smi sees, decided here: LitServe's own 'auto' picks CUDA
    only if torch happens to be imported in the main process already.
    """
    if device == "auto":
        device = "cuda" if check_cuda_with_nvidia_smi() > 0 else "cpu"
    if not device.startswith("cuda"):
        return device, []
    if device == "cuda":
        gpus: list[int] = list(range(check_cuda_with_nvidia_smi()))
    else:
        gpus = [int(gpu) for gpu in device.removeprefix("cuda:").split(",")]
    return "cuda", replica_gpu_sets(gpus, gpus_per_replica)


def serve(settings: Settings, log_level: str = "info") -> None:
    """Run until SIGINT or SIGTERM; both shut the workers and API servers down. A SIGKILL leaves
    none of them behind either: each gets a SIGTERM from the kernel when this process dies.

    A model that cannot be loaded (or fails its warm-up) stops the start with `ModelLoadError`.
    """
    shared = SharedState(settings.max_in_flight, settings.in_flight_per_tenant)
    server = build_server(settings, shared)
    signal.signal(signal.SIGTERM, _sigterm_handler(os.getpid()))
    children_exit_with_this_process()  # API servers and the manager LitServe forks (model workers: setup)
    try:
        server.run(
            host=settings.host,
            port=settings.port,
            num_api_servers=settings.api_servers,
            log_level=log_level,
            generate_client_file=False,
            http=header_deadline_protocol(settings.header_timeout_s, shared.metrics),
        )
    except RuntimeError as error:  # LitServe's only start-up failure: a worker's `setup` raised
        raise ModelLoadError(f"{error}; the model worker's error is logged above") from error


def _sigterm_handler(main_pid: int) -> Callable[[int, object], NoReturn]:
    """SIGTERM (docker stop, systemd) takes LitServe's graceful path, as Ctrl-C does.

    The forked API servers inherit the handler; uvicorn in them re-raises the SIGTERM that LitServe
    stops them with once it has shut down, and for them it just means exit.
    """

    def handler(_signum: int, _frame: object) -> NoReturn:
        if os.getpid() != main_pid:
            raise SystemExit(0)
        raise KeyboardInterrupt

    return handler
