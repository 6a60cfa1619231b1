"""Errors as JSON answers: `{"error": {"code": ..., "message": ...}}` with the error's HTTP status.

Used by the exception handlers of the app and by the pure-ASGI middlewares (which answer before any
route runs). Anything that is not an `EvalsvcError` is a bug: it is logged with its traceback and
answered 500 `internal_error`, never with a stack trace. A client that hangs up before its request
is read is no bug: it is logged in one line, and counted as 499 by the request metrics.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from evalsvc.errors import EvalsvcError, Unauthorized, ValidationFailed
from evalsvc.protocol import NUL_FREE

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "invalid_parameter",
    401: Unauthorized.code,
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: ValidationFailed.code,
    429: "overloaded",
    503: "not_ready",
    504: "scoring_timeout",
}


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_headers(error: EvalsvcError) -> dict[str, str]:
    """Retry-After on the transient statuses, WWW-Authenticate on 401 (RFC 9110); `Connection: close`
    where the body may be left unread (408, 413), so its rest is never taken for a next request."""
    if error.http_status in (429, 503):
        return {"Retry-After": "1"}
    if error.http_status == 401:
        return {"WWW-Authenticate": 'Bearer realm="evalsvc"'}
    if error.http_status in (408, 413):
        return {"Connection": "close"}
    return {}


def error_response(error: EvalsvcError) -> JSONResponse:
    return JSONResponse(
        {"error": error.to_dict()}, status_code=error.http_status, headers=error_headers(error)
    )


async def send_error(send: Send, error: EvalsvcError) -> None:
    """Answer from a pure-ASGI middleware, before the app (and its exception handlers) ran."""
    body = json.dumps({"error": error.to_dict()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in error_headers(error).items()]
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def validation_message(errors: list[dict[str, object]]) -> str:
    """pydantic's error list as one line: `query.audio_b64: Field required; mode: ...`."""
    parts = []
    for item in errors[:10]:
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")  # type: ignore[union-attr]
        message = item.get("msg")
        if item.get("type") == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") == NUL_FREE:  # type: ignore[union-attr]
            message = "must not contain a NUL character (\\u0000)"
        parts.append(f"{location or 'body'}: {message}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can raise, in the one JSON shape."""

    async def evalsvc_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, EvalsvcError)
        return error_response(error)

    async def http_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = _HTTP_CODES.get(
            error.status_code, "internal_error" if error.status_code >= 500 else "http_error"
        )
        return JSONResponse(
            error_body(code, str(error.detail)), status_code=error.status_code, headers=error.headers
        )

    async def request_validation_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return error_response(ValidationFailed(validation_message(list(error.errors()))))

    async def client_disconnected(request: Request, _error: Exception) -> Response:
        logger.info("the client hung up before %s %s was read", request.method, request.url.path)
        return Response(status_code=499)  # nobody reads it; the metrics count the hang-up

    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse(
            error_body("internal_error", "internal error; it has been logged"), status_code=500
        )

    app.add_exception_handler(EvalsvcError, evalsvc_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(ClientDisconnect, client_disconnected)
    app.add_exception_handler(Exception, unexpected_error)
