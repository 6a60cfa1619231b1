"""`evalsvc serve`: the HTTP API (`POST /v1/score`) on LitServe, with the model loaded in its workers."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR, add_model_options, add_store_options, fail
from evalsvc.settings import Settings

# Flag -> Settings field, for the serving knobs (the model and store flags are handled in common).
SERVE_FLAGS: dict[str, str] = {
    "host": "host",
    "port": "port",
    "max_batch_size": "max_batch_size",
    "batch_timeout": "batch_timeout_s",
    "workers_per_device": "workers_per_device",
    "gpus_per_replica": "gpus_per_replica",
    "api_servers": "api_servers",
    "max_in_flight": "max_in_flight",
    "max_in_flight_per_tenant": "max_in_flight_per_tenant",
    "header_timeout": "header_timeout_s",
    "body_timeout": "body_timeout_s",
    "max_payload_bytes": "max_payload_bytes",
    "request_timeout": "request_timeout_s",
    "data_root": "data_roots",
}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the HTTP API (POST /v1/score) with dynamic batching",
        description="Serve EmpathyEval over HTTP: POST /v1/score (multipart or JSON), GET /v1/results/ID, "
        "bulk runs, reports, /health, /ready, /metrics, /openapi.json and /docs. Every flag overrides its "
        "EVALSVC_* setting.",
    )
    group = parser.add_argument_group("serving (override EVALSVC_* settings)")
    group.add_argument("--host", help="127.0.0.1 (default), 0.0.0.0 or ::")
    group.add_argument("--port", type=int, help="default 8000")
    group.add_argument("--max-batch-size", type=int, help="largest dynamic batch (default 8; 1 = off)")
    group.add_argument("--batch-timeout", type=float, help="seconds a worker waits to fill a batch (0.01)")
    group.add_argument(
        "--gpus-per-replica",
        type=int,
        help="GPUs each model worker spreads its model over (1; 8 GPUs, 2: 4 sets)",
    )
    group.add_argument("--workers-per-device", type=int, help="model workers per GPU set or for the CPU (1)")
    group.add_argument("--api-servers", type=int, help="HTTP front-end processes (one per model worker)")
    group.add_argument("--max-in-flight", type=int, help="scoring requests served at once; then 429 (64)")
    group.add_argument(
        "--max-in-flight-per-tenant", type=int, help="of those, at most this many for one tenant (all)"
    )
    group.add_argument(
        "--header-timeout", type=float, help="seconds to send a request's line and headers; then 408 (20)"
    )
    group.add_argument(
        "--body-timeout",
        type=float,
        help="seconds to send a body, +1 s per 500 bytes received (EVALSVC_BODY_MIN_BYTES_PER_S); then 408 (20)",
    )
    group.add_argument("--max-payload-bytes", type=int, help="largest request body; then 413 (72 MiB)")
    group.add_argument("--request-timeout", type=float, help="seconds per scoring request; then 504 (120)")
    group.add_argument(
        "--data-root", action="append", help="a directory JSON requests may name files in (repeatable)"
    )
    group.add_argument(
        "--no-auth", action="store_true", help="serve without API keys (only allowed on 127.0.0.1)"
    )
    group.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_model_options(parser)
    add_store_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from evalsvc.api.server import serve  # LitServe and the app are loaded only for this command

    overrides: dict[str, Any] = {
        field: getattr(args, flag) for flag, field in SERVE_FLAGS.items() if getattr(args, flag) is not None
    }
    if args.no_auth:
        overrides["auth_enabled"] = False
    try:
        settings = Settings.model_validate(settings.model_dump() | overrides)
    except ValidationError as error:
        return fail("invalid_parameter", str(error).replace("\n", " "), EXIT_USER_ERROR)
    serve(settings, log_level=args.log_level)
    return EXIT_OK
