"""Build the LitServer: the model tier's `LitAPI`, our routes in place of LitServe's, the middlewares.

LitServe registers `/v1/score` (a raw pass-through to its queue) and `/health` (which, with
`LIT_SERVER_API_KEY`, would need a key); both are replaced by our routes. Middlewares, outermost
first: request metrics (they see every answer, 401 and 429 included), payload limit (before a body
is read), auth (before a request may take an in-flight slot), in-flight bound, then LitServe's GZip.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import NoReturn

from litserve import LitServer
from litserve.connector import check_cuda_with_nvidia_smi

from evalsvc import __version__
from evalsvc.api.auth import AuthMiddleware, TenantResolver
from evalsvc.api.limits import InFlightLimitMiddleware, PayloadLimitMiddleware
from evalsvc.api.litapi import SCORE_PATH, ScoringAPI
from evalsvc.api.metrics import RequestMetricsMiddleware, SharedMetrics
from evalsvc.api.model_tier import ModelTier
from evalsvc.api.reports import add_report_routes
from evalsvc.api.responses import install_error_handlers
from evalsvc.api.routes import add_routes
from evalsvc.api.runs import add_run_routes
from evalsvc.api.service import ScoreService
from evalsvc.api.shared import SharedState
from evalsvc.errors import ModelLoadError
from evalsvc.lifetime import children_exit_with_this_process
from evalsvc.scoring import ResultCache
from evalsvc.settings import Settings
from evalsvc.store import Store

_REPLACED_ROUTES = frozenset({SCORE_PATH, "/health"})


def build_server(settings: Settings) -> LitServer:
    shared = SharedState(settings.max_in_flight)
    accelerator, devices = litserve_devices(settings.device)
    server = LitServer(
        ScoringAPI(settings, shared),
        accelerator=accelerator,
        devices=devices,
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
    add_routes(app, settings, service, shared)
    add_report_routes(app, store)
    add_run_routes(app, settings, store)
    install_error_handlers(app)
    shared.metrics = SharedMetrics(str(getattr(route, "path", "")) for route in app.router.routes)
    app.add_middleware(InFlightLimitMiddleware, counter=shared.in_flight)
    app.add_middleware(AuthMiddleware, resolver=TenantResolver(store, auth_enabled=settings.auth_enabled))
    app.add_middleware(PayloadLimitMiddleware, max_bytes=settings.max_payload_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=shared.metrics, router=app.router)
    return server


def litserve_devices(device: str) -> tuple[str, int | list[int] | str]:
    """Settings.device as LitServe's (accelerator, devices).

    'auto' is decided here with nvidia-smi: LitServe's own 'auto' picks CUDA only if torch happens to
    be imported in the main process already.
    """
    if device == "auto":
        device = "cuda" if check_cuda_with_nvidia_smi() > 0 else "cpu"
    if device.startswith("cuda:"):
        return "cuda", [int(device.removeprefix("cuda:"))]
    if device == "cuda":
        return "cuda", "auto"
    return device, 1


def serve(settings: Settings, log_level: str = "info") -> None:
    """Run until SIGINT or SIGTERM; both shut the workers and API servers down. A SIGKILL leaves
    none of them behind either: each gets a SIGTERM from the kernel when this process dies.

    A model that cannot be loaded (or fails its warm-up) stops the start with `ModelLoadError`.
    """
    server = build_server(settings)
    signal.signal(signal.SIGTERM, _sigterm_handler(os.getpid()))
    children_exit_with_this_process()  # API servers and the manager LitServe forks (model workers: setup)
    try:
        server.run(
            host=settings.host,
            port=settings.port,
            num_api_servers=settings.api_servers,
            log_level=log_level,
            generate_client_file=False,
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
