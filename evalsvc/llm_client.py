"""Chat completions against any OpenAI-compatible API, through the official `openai` client.

What this adds to the client:
- bounded concurrency: at most `concurrency` calls in flight per client, whatever fans out;
- retries: the client's own (exponential backoff from 0.5 s doubling to 8 s with jitter, or the
  server's Retry-After up to 2 min) on 408, 409, 429, 5xx, connection errors and timeouts, up to
  `max_retries`; what is left after them becomes one evalsvc error code each (errors.py);
- structured output: `json_schema` response format, stepping down to `json_object` and then plain text
  when the server says it does not support the format ('auto'); replies are parsed strictly by the
  judges in every mode (evalsvc.judges.replies);
- deterministic decoding by default (temperature 0, a seed) and a ledger row per call: tokens,
  cost at the configured prices, latency, mode, finish reason, and what the server said it ran.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import httpx2
import openai

from evalsvc.errors import (
    LLMAuthFailed,
    LLMModelUnavailable,
    LLMRateLimited,
    LLMRequestRejected,
    LLMServerError,
    LLMTimeout,
    LLMUnreachable,
)
from evalsvc.settings import Settings, StructuredOutput

T = TypeVar("T")
OUTPUT_MODES: tuple[str, ...] = ("json_schema", "json_object", "text")
_FIRST_MODE = {
    "auto": "json_schema",
    "json_schema": "json_schema",
    "json_object": "json_object",
    "off": "text",
}
# Words of a 400/422 that blame the response format (OpenAI: "Invalid parameter: 'response_format' of
# type 'json_schema' is not supported with this model"; vLLM: guided decoding; FastAPI validation).
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "structured", "guided")
_NO_KEY = "EMPTY"  # what servers without keys (vLLM's default) accept; the openai client needs a string


@dataclass(frozen=True)
class Prices:
    """USD per million tokens; None: unknown, and costs are reported as None rather than as 0."""

    input_per_1m: float | None = None
    output_per_1m: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.input_per_1m is None or self.output_per_1m is None:
            return None
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


@dataclass(frozen=True)
class ApiNames:
    """How error messages name the API and the settings that configure it: the judge LLM's by
    default, the generation server's for evalsvc.engine.served."""

    api: str = "the LLM API"
    base_url: str = "EVALSVC_LLM_BASE_URL"
    model: str = "EVALSVC_LLM_MODEL"
    api_key: str = "EVALSVC_LLM_API_KEY"
    timeout: str = "EVALSVC_LLM_TIMEOUT_S"
    concurrency: str = "EVALSVC_LLM_CONCURRENCY"


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int = 1024
    structured_output: StructuredOutput = "auto"
    concurrency: int = 8
    max_retries: int = 4
    timeout_s: float = 60.0
    prices: Prices = Prices()
    top_p: float | None = None
    """Sent only when set (the judges leave it to the server)."""
    names: ApiNames = ApiNames()

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMConfig:
        return cls(
            base_url=settings.llm_base_url.rstrip("/"),
            model=settings.llm_model,
            temperature=settings.llm_temperature,
            seed=settings.llm_seed,
            max_tokens=settings.llm_max_tokens,
            structured_output=settings.llm_structured_output,
            concurrency=settings.llm_concurrency,
            max_retries=settings.llm_max_retries,
            timeout_s=settings.llm_timeout_s,
            prices=Prices(settings.llm_price_input_per_1m, settings.llm_price_output_per_1m),
        )

    def decoding(self) -> dict[str, Any]:
        """What the replies depend on besides the prompt and the model: part of judge fingerprints."""
        return {
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "structured_output": self.structured_output,
        }


@dataclass(frozen=True)
class LLMCall:
    """One ledger row: what a call cost and what answered it (kept for failed replies too)."""

    model: str
    """The model the server says answered (may name a dated snapshot of the requested one)."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_ms: float
    output_mode: str
    finish_reason: str | None
    response_id: str | None
    system_fingerprint: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LLMReply:
    text: str | None
    refusal: str | None
    finish_reason: str | None
    call: LLMCall


class LLMClient:
    """Thread-safe: one client serves every judge of a process and bounds their calls together."""

    def __init__(self, config: LLMConfig, api_key: str | None) -> None:
        self.config = config
        self._openai = openai.OpenAI(
            api_key=api_key or _NO_KEY,
            base_url=config.base_url,
            timeout=httpx2.Timeout(config.timeout_s, connect=min(config.timeout_s, 10.0)),
            max_retries=config.max_retries,
        )
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._mode_lock = threading.Lock()
        self._mode = _FIRST_MODE[config.structured_output]

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMClient:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return cls(LLMConfig.from_settings(settings), key)

    @property
    def output_mode(self) -> str:
        """The response format calls use now ('auto' may have stepped down from json_schema)."""
        return self._mode

    def close(self) -> None:
        self._openai.close()

    def check(self) -> None:
        """Fail fast before a run: the key is accepted and the model is served (GET /models).

        A server without the models route (404/405) is given the benefit of the doubt: the first
        call will tell. A model list without the configured model is refused, naming what is there.
        """
        try:
            listed = [model.id for model in self._openai.models.list()]
        except openai.APIStatusError as error:
            if error.status_code in (404, 405):
                return
            raise self._translate(error) from error
        except openai.APIConnectionError as error:
            raise self._translate(error) from error
        if listed and self.config.model not in listed:
            shown = ", ".join(sorted(listed)[:10]) + (" ..." if len(listed) > 10 else "")
            names = self.config.names
            raise LLMModelUnavailable(
                f"{names.api} at {self.config.base_url} does not serve the model {self.config.model!r} "
                f"({names.model}); it serves: {shown}"
            )

    def complete(self, messages: Sequence[dict[str, Any]], schema: dict[str, Any]) -> LLMReply:
        """One chat completion; `schema` is the `json_schema` response format of the answer.

        Raises the evalsvc error of a call that got no usable HTTP answer (see the module docstring).
        """
        with self._slots:
            while True:
                mode = self._mode
                try:
                    return self._create(messages, schema, mode)
                except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
                    if not self._step_down(mode, error):
                        raise LLMRequestRejected(
                            f"{self.config.names.api} rejected the request ({error.status_code}): {_detail(error)}"
                        ) from error
                except openai.APIError as error:
                    raise self._translate(error) from error

    def run_all(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        """Run `tasks` on up to `concurrency` threads, results in input order. The first exception
        cancels what has not started and is raised once the running ones finish."""
        if not tasks:
            return []
        with ThreadPoolExecutor(min(self.config.concurrency, len(tasks)), thread_name_prefix="llm") as pool:
            futures = [pool.submit(task) for task in tasks]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((future for future in done if future.exception() is not None), None)
            if failed is not None:
                for future in futures:
                    future.cancel()
                raise failed.exception()  # type: ignore[misc]
            return [future.result() for future in futures]

    def _create(self, messages: Sequence[dict[str, Any]], schema: dict[str, Any], mode: str) -> LLMReply:
        options: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(messages),
            "temperature": self.config.temperature,
            "max_completion_tokens": self.config.max_tokens,
        }
        if self.config.seed is not None:
            options["seed"] = self.config.seed
        if self.config.top_p is not None:
            options["top_p"] = self.config.top_p
        if mode == "json_schema":
            options["response_format"] = schema
        elif mode == "json_object":
            options["response_format"] = {"type": "json_object"}
        started = time.perf_counter()
        completion = self._openai.chat.completions.create(**options)
        latency_ms = (time.perf_counter() - started) * 1000.0
        if not completion.choices:
            raise LLMServerError(
                f"{self.config.names.api} at {self.config.base_url} answered without a choice"
            )
        choice = completion.choices[0]
        usage = completion.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = (usage.completion_tokens or 0) if usage else 0
        call = LLMCall(
            model=completion.model or self.config.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=self.config.prices.cost(prompt_tokens, completion_tokens),
            latency_ms=latency_ms,
            output_mode=mode,
            finish_reason=choice.finish_reason,
            response_id=completion.id,
            system_fingerprint=completion.system_fingerprint,
        )
        message = choice.message
        return LLMReply(message.content, getattr(message, "refusal", None), choice.finish_reason, call)

    def _step_down(self, mode: str, error: openai.APIStatusError) -> bool:
        """With 'auto', a format the server rejects is replaced by the next simpler one, for every
        later call of this client too. Other 400s (a too-long transcript) reject the one request."""
        if self.config.structured_output != "auto" or mode == "text":
            return False
        if not any(word in _detail(error).lower() for word in _FORMAT_WORDS):
            return False
        with self._mode_lock:
            if self._mode == mode:
                self._mode = OUTPUT_MODES[OUTPUT_MODES.index(mode) + 1]
        return True

    def _translate(self, error: openai.APIError) -> Exception:
        where, model, names = self.config.base_url, self.config.model, self.config.names
        retries = f"after {self.config.max_retries} retries"
        if isinstance(error, openai.APITimeoutError):
            return LLMTimeout(
                f"{names.api} at {where} did not answer within {self.config.timeout_s:g} s, {retries} "
                f"({names.timeout})"
            )
        if isinstance(error, openai.APIConnectionError):
            return LLMUnreachable(f"cannot connect to {names.api} at {where} ({names.base_url}): {error}")
        if isinstance(error, openai.AuthenticationError):
            return LLMAuthFailed(
                f"{names.api} at {where} refused the key (401): set {names.api_key} ({_detail(error)})"
            )
        if isinstance(error, openai.PermissionDeniedError | openai.NotFoundError):
            return LLMModelUnavailable(
                f"{names.api} at {where} does not serve the model {model!r} to this key "
                f"({error.status_code}: {_detail(error)}); check {names.model}, and that "
                f"{names.base_url} is the API root (it usually ends in /v1)"
            )
        if isinstance(error, openai.RateLimitError):
            return LLMRateLimited(
                f"{names.api} at {where} kept answering 429 {retries}: lower {names.concurrency} or "
                f"wait ({_detail(error)})"
            )
        status = getattr(error, "status_code", None)
        return LLMServerError(f"{names.api} at {where} answered {status} {retries}: {_detail(error)}")


def _detail(error: openai.APIError) -> str:
    """The server's own message (OpenAI-style `{"error": {"message": ...}}`, FastAPI `detail`, text)."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        found = message if message is not None else body.get("detail", body)
        return str(found)[:300]
    return str(body or error.message)[:300]
