"""Python client of the evalsvc HTTP API (httpx), synchronous and asynchronous.

    with EvalClient("http://127.0.0.1:8000", api_key="evs_...") as client:
        result = client.score("query.wav", "response.wav", mode="both")
        print(result.scores.avg if result.scores else result.error)
        verdict = client.judge("query.wav", "response.wav", "llm-ab", reference_transcript="...")
        print(verdict.result or verdict.error)

Audio may be a path, the bytes of an encoded file, or a numpy array with `sample_rate` (sent as a
float WAV, so the server hears exactly those samples). Every call has explicit timeouts; 429 and 503
answers (overloaded, still loading) and refused connections are retried with exponential backoff
and jitter, honouring Retry-After; every other error raises the `APIError` subclass of its status,
carrying the server's stable `code`.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import soundfile

from evalsvc.protocol import JudgeName, JudgeResponse, ScoreResponse, StoredResult
from evalsvc.settings import Mode

Audio = str | PathLike[str] | bytes | np.ndarray
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=150.0, write=60.0, pool=10.0)
"""Read allows for the server's own 120 s scoring limit, so its 504 arrives rather than a client timeout."""


class EvalClientError(Exception):
    """Base of everything this client raises."""


class TransportError(EvalClientError):
    """No HTTP answer: connection refused or reset, DNS, or a client-side timeout."""


class APIError(EvalClientError):
    """The server answered with an error; `code` is its stable identifier (see the README)."""

    status: ClassVar[int | None] = None

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message


class BadRequestError(APIError):
    """400: bad audio (audio_unreadable, audio_too_short, ...) or a bad parameter."""

    status = 400


class AuthenticationError(APIError):
    status = 401


class NotFoundError(APIError):
    status = 404


class PayloadTooLargeError(APIError):
    status = 413


class UnsupportedMediaTypeError(APIError):
    status = 415


class ValidationError(APIError):
    status = 422


class RateLimitedError(APIError):
    """429 after the retries ran out."""

    status = 429


class ServiceUnavailableError(APIError):
    """503 after the retries ran out: model loading, database down."""

    status = 503


class ScoringTimeoutError(APIError):
    status = 504


class ServerError(APIError):
    """Any other status: a bug on the server side (it logs the details)."""


_ERRORS: dict[int, type[APIError]] = {
    cls.status: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        NotFoundError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        ValidationError,
        RateLimitedError,
        ServiceUnavailableError,
        ScoringTimeoutError,
    )
    if cls.status is not None
}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; Retry-After from the server wins when longer."""

    attempts: int = 5
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(self, attempt: int, retry_after: str | None) -> float:
        backoff = random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))
        try:
            return max(backoff, min(float(retry_after or 0), self.max_backoff_s))
        except ValueError:  # an HTTP date: not sent by evalsvc
            return backoff


NO_RETRY = RetryPolicy(attempts=1)


def encode_audio(audio: Audio, sample_rate: int | None = None) -> bytes:
    """The bytes to upload: a file's contents, bytes as given, or an array as a 32-bit float WAV."""
    if isinstance(audio, bytes):
        return audio
    if isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise ValueError("sample_rate is required to send a numpy array")
        buffer = io.BytesIO()
        soundfile.write(buffer, audio, sample_rate, format="WAV", subtype="FLOAT")
        return buffer.getvalue()
    return Path(audio).read_bytes()


def _score_form(
    query: Audio, response: Audio, mode: Mode, metadata: Mapping[str, Any] | None, sample_rate: int | None
) -> dict[str, Any]:
    files = {
        "query": ("query.wav", encode_audio(query, sample_rate), "application/octet-stream"),
        "response": ("response.wav", encode_audio(response, sample_rate), "application/octet-stream"),
    }
    data = {"mode": mode, "metadata": json.dumps(dict(metadata or {}))}
    return {"files": files, "data": data}


def _judge_form(
    query: Audio,
    response: Audio,
    judge: JudgeName,
    reference: Audio | None,
    reference_transcript: str | None,
    metadata: Mapping[str, Any] | None,
    sample_rate: int | None,
) -> dict[str, Any]:
    """The score form with the `judge` field and the A/B reference (a clip or its transcript); the
    server refuses both references at once, and an A/B judge without one, with a 400/422."""
    form = _score_form(query, response, "scores", metadata, sample_rate)
    form["data"]["judge"] = judge
    if reference is not None:
        data = encode_audio(reference, sample_rate)
        form["files"]["reference"] = ("reference.wav", data, "application/octet-stream")
    if reference_transcript is not None:
        form["data"]["reference_transcript"] = reference_transcript
    return form


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:500]
    raise _ERRORS.get(response.status_code, ServerError)(response.status_code, code, message)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class EvalClient:
    """Blocking client; one connection pool per instance (use it as a context manager, or `close`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def score(
        self,
        query: Audio,
        response: Audio,
        *,
        mode: Mode = "scores",
        metadata: Mapping[str, Any] | None = None,
        sample_rate: int | None = None,
    ) -> ScoreResponse:
        form = _score_form(query, response, mode, metadata, sample_rate)
        answer = self._request("POST", "/v1/score", **form)
        return ScoreResponse.model_validate(answer.json())

    def judge(
        self,
        query: Audio,
        response: Audio,
        judge: JudgeName,
        *,
        reference: Audio | None = None,
        reference_transcript: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        sample_rate: int | None = None,
    ) -> JudgeResponse:
        """The pair judged by an LLM judge (llm-mos, llm-ab, llm-assessment, each also +emotion); the
        llm-ab judges need `reference` (the ground-truth clip) or `reference_transcript`."""
        form = _judge_form(query, response, judge, reference, reference_transcript, metadata, sample_rate)
        answer = self._request("POST", "/v1/score", **form)
        return JudgeResponse.model_validate(answer.json())

    def result(self, result_id: int) -> StoredResult:
        return StoredResult.model_validate(self._request("GET", f"/v1/results/{int(result_id)}").json())

    def ready(self) -> bool:
        """True when the model is loaded and the database reachable; no retries."""
        try:
            return self._http.get("/ready").is_success
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout_s: float = 300.0, poll_s: float = 0.5) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise TransportError(f"the server was not ready within {timeout_s:g} s")
            time.sleep(poll_s)

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.ConnectError as error:
                if last:
                    raise TransportError(f"cannot connect to {self._http.base_url}: {error}") from error
                time.sleep(self.retry.delay(attempt, None))
                continue
            except httpx.TransportError as error:
                raise TransportError(f"{method} {url} failed: {error!r}") from error
            if response.status_code in self.retry.statuses and not last:
                time.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
                continue
            _raise_for_error(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EvalClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncEvalClient:
    """The same API for asyncio: `await client.score(...)`; `async with` closes it."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def score(
        self,
        query: Audio,
        response: Audio,
        *,
        mode: Mode = "scores",
        metadata: Mapping[str, Any] | None = None,
        sample_rate: int | None = None,
    ) -> ScoreResponse:
        form = _score_form(query, response, mode, metadata, sample_rate)
        answer = await self._request("POST", "/v1/score", **form)
        return ScoreResponse.model_validate(answer.json())

    async def judge(
        self,
        query: Audio,
        response: Audio,
        judge: JudgeName,
        *,
        reference: Audio | None = None,
        reference_transcript: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        sample_rate: int | None = None,
    ) -> JudgeResponse:
        """As `EvalClient.judge`."""
        form = _judge_form(query, response, judge, reference, reference_transcript, metadata, sample_rate)
        answer = await self._request("POST", "/v1/score", **form)
        return JudgeResponse.model_validate(answer.json())

    async def result(self, result_id: int) -> StoredResult:
        answer = await self._request("GET", f"/v1/results/{int(result_id)}")
        return StoredResult.model_validate(answer.json())

    async def ready(self) -> bool:
        try:
            return (await self._http.get("/ready")).is_success
        except httpx.TransportError:
            return False

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.ConnectError as error:
                if last:
                    raise TransportError(f"cannot connect to {self._http.base_url}: {error}") from error
                await asyncio.sleep(self.retry.delay(attempt, None))
                continue
            except httpx.TransportError as error:
                raise TransportError(f"{method} {url} failed: {error!r}") from error
            if response.status_code in self.retry.statuses and not last:
                await asyncio.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
                continue
            _raise_for_error(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEvalClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
