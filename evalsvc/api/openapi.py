"""The OpenAPI document: FastAPI's, completed with what it cannot see in the route signatures.

- `/v1/score` reads its body itself (two content types), so its request body is declared here
  (`score_request_body`) and `ScoreRequest` is added to the components.
- Authentication is a middleware, so the security schemes (`Authorization: Bearer KEY` and
  `X-API-Key: KEY`) and which operations need them are added here; the probes, `/` and the document
  itself need no key.
- The error answers that middlewares and the exception handlers give any route (400, 401, 408, 413,
  422, 503) are added to every operation they can reach, each with the `{"error": {"code", "message"}}`
  body, in place of FastAPI's default 422 body, which this service never sends. Route-specific errors
  stay declared on the routes; FastAPI gives their bodies the route's media type (an HTML report's
  404 would be `text/html`), so every error body is moved to `application/json`, as it is sent.

A test runs schemathesis over the result against the live server (tests/api/test_api_schema.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, get_args

from fastapi import FastAPI

from evalsvc.engine.types import MODES
from evalsvc.protocol import ErrorResponse, JudgeName, ScoreRequest

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer KEY`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "`X-API-Key: KEY`"},
}
_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
_SECURED = "401", "Missing or unknown API key (unauthorized)."
_UNAVAILABLE = "503", "Database unavailable (database_unavailable); retry later."
_INVALID = "422", "Parameters or fields missing, of the wrong type or out of range (validation_failed)."
_BODY_ERRORS = (
    ("400", "The body cannot be parsed (invalid_parameter)."),
    ("408", "The body was sent too slowly (request_timeout); the connection is closed."),
    ("413", "Body over EVALSVC_MAX_PAYLOAD_BYTES (payload_too_large)."),
)
_FASTAPI_DEFAULTS = ("HTTPValidationError", "ValidationError")


def score_request_body() -> dict[str, Any]:
    """The `openapi_extra` of `POST /v1/score`: its two body types."""
    multipart = {
        "type": "object",
        "required": ["query", "response"],
        "properties": {
            "query": {"type": "string", "format": "binary", "description": "The user's spoken query."},
            "response": {"type": "string", "format": "binary", "description": "The spoken response judged."},
            "mode": {"type": "string", "enum": list(MODES), "default": "scores"},
            "metadata": {"type": "string", "description": "A JSON object, echoed back (at most 64 KiB)."},
            "judge": {
                "type": "string",
                "enum": list(get_args(JudgeName)),
                "default": "empathyeval",
                "description": "empathyeval (the served model) or an LLM judge over Whisper transcripts.",
            },
            "reference": {
                "type": "string",
                "format": "binary",
                "description": "The ground-truth spoken response (the llm-ab judges).",
            },
            "reference_transcript": {
                "type": "string",
                "description": "The ground-truth response as text (llm-ab), instead of `reference`.",
            },
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/json": {"schema": {"$ref": "#/components/schemas/ScoreRequest"}},
            },
        }
    }


def install_openapi(app: FastAPI, *, auth_enabled: bool, public_paths: frozenset[str]) -> None:
    """Make `app.openapi()` return the completed document (built once, on first request)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), auth_enabled=auth_enabled, public_paths=public_paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], *, auth_enabled: bool, public_paths: frozenset[str]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    score_request = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(score_request.pop("$defs", {}))
    schemas["ScoreRequest"] = score_request
    schemas.setdefault(
        "ErrorResponse", ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    if auth_enabled:
        components["securitySchemes"] = SECURITY_SCHEMES
        document["security"] = [{name: []} for name in SECURITY_SCHEMES]
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            public = path in public_paths
            if public and auth_enabled:
                operation["security"] = []
            _add_errors(operation, secured=auth_enabled and not public)
    for name in _FASTAPI_DEFAULTS:
        if f'"#/components/schemas/{name}"' not in json.dumps(document):
            schemas.pop(name, None)
    return document


def _add_errors(operation: dict[str, Any], *, secured: bool) -> None:
    responses = operation.setdefault("responses", {})
    errors: list[tuple[str, str]] = []
    if secured:
        errors += [_SECURED, _UNAVAILABLE]  # the key is looked up in the database
    if operation.get("parameters") or "requestBody" in operation:
        errors.append(_INVALID)
        if _is_fastapi_default(responses.get("422")):
            del responses["422"]
    if "requestBody" in operation:
        errors += _BODY_ERRORS
    for status, description in errors:
        responses.setdefault(status, {"description": description})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            schemas = [media.get("schema") for media in response.get("content", {}).values()]
            schema = next((found for found in schemas if found), _ERROR_SCHEMA)
            response["content"] = {"application/json": {"schema": schema}}


def _is_fastapi_default(response: dict[str, Any] | None) -> bool:
    schema = (response or {}).get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref") == "#/components/schemas/HTTPValidationError"
