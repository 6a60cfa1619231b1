"""Assessment text from a generation server (vLLM serving a merged checkpoint); heads in process.

    pairs ──▶ judge_messages (input_audio parts) ──▶ OpenAI-compatible server ──▶ text ──▶ score line
      │                                                                                   (as in process)
      └─ heads configured and mode scores/both ──▶ in-process scores-mode forward ──▶ NS/WA/EU/ES

`transformers.generate` decodes static batches: a batch lasts as long as its longest answer. vLLM
batches continuously, but cannot apply the LoRA to Qwen3-Omni and returns no hidden states, so it
serves the merged export (`evalsvc export merged`) and the heads stay here, on a forward pass of the
same inputs. Configuring an adapter with a generation server is refused: the server would be judging
without it.

The fingerprint is the configured judge's with the backend in its decoding (server URL, served model,
the merged checkpoint's manifest hash): texts from the server never share cache entries with
in-process ones, while the backbone, and so the heads, stay the same.

Failures follow the LLM client's rules (evalsvc.llm_client): retried with backoff, then an
unreachable, overloaded, failing or slow server raises its coded `ServiceBusy` error for the whole
batch (a bulk shard retries it, then the job fails and `bulk resume` picks it up); a request the
server refuses (400: audio beyond its context, say) fails that pair alone and is not cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

from evalsvc.engine.artifacts import ModelArtifacts, configured_fingerprint, resolve_artifacts
from evalsvc.engine.merge_manifest import verified_manifest
from evalsvc.engine.profiles import strip_thinking
from evalsvc.engine.prompt import pair_result
from evalsvc.engine.served_requests import judge_messages
from evalsvc.engine.types import MODES, AudioPair, GenerationBackend, ModelFingerprint, PairResult, Scores
from evalsvc.errors import InvalidParameter, ItemError, LLMReplyError, ModelLoadError
from evalsvc.llm_client import ApiNames, LLMClient, LLMConfig
from evalsvc.settings import Mode, Settings

if TYPE_CHECKING:
    from evalsvc.engine.engine import Engine

GENERATION_NAMES = ApiNames(
    api="the generation server",
    base_url="EVALSVC_GENERATION_URL",
    model="EVALSVC_GENERATION_MODEL",
    api_key="EVALSVC_GENERATION_API_KEY",
    timeout="EVALSVC_GENERATION_TIMEOUT_S",
    concurrency="EVALSVC_GENERATION_CONCURRENCY",
)


def judge_fingerprint(settings: Settings) -> ModelFingerprint:
    """The fingerprint of what scores with `settings`: in process, or through the generation server."""
    if not settings.generation_url:
        return configured_fingerprint(settings)
    return _served_fingerprint(settings, _served_artifacts(settings))


def load_judge(settings: Settings) -> Engine | ServedJudge:
    """The scorer `settings` describe; torch and the model load here only for in-process scoring."""
    if settings.generation_url:
        return ServedJudge(settings)
    from evalsvc.engine.engine import Engine

    return Engine.load(settings)


class ServedJudge:
    """A `Scorer` whose text comes from the generation server; the in-process model loads only when
    heads are needed."""

    def __init__(self, settings: Settings) -> None:
        artifacts = _served_artifacts(settings)
        self._settings = settings
        self.fingerprint = _served_fingerprint(settings, artifacts)
        self.has_heads = artifacts.heads is not None
        self._strip_thinking = artifacts.profile.strips_thinking
        self._client = LLMClient(_client_config(settings, self.fingerprint), _key(settings))
        self._engine: Engine | None = None

    def warmup(self) -> None:
        """Fail at start when the server is unreachable, refuses the key or does not serve the model,
        or when the heads' model does not load."""
        self._client.check()
        if self.has_heads:
            self._heads_engine().warmup()

    def close(self) -> None:
        self._client.close()

    def score(self, pairs: Sequence[AudioPair], mode: Mode) -> list[PairResult]:
        if mode not in MODES:
            raise InvalidParameter(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not pairs:
            return []
        if mode == "scores" and self.has_heads:
            return self._heads_engine().score(pairs, "scores")
        started = perf_counter()
        texts = self._client.run_all([lambda pair=pair: self._generate(pair) for pair in pairs])
        generated = perf_counter()
        head_scores: list[Scores | None] = [None] * len(pairs)
        if mode == "both" and self.has_heads:
            head_scores = [result.scores for result in self._heads_engine().score(pairs, "scores")]
        finished = perf_counter()
        timings = {
            "generation_ms": (generated - started) * 1e3,
            "heads_ms": (finished - generated) * 1e3,
            "total_ms": (finished - started) * 1e3,
        }
        return [
            PairResult(scores=None, assessment=None, error=text, timings_ms=dict(timings))
            if isinstance(text, ItemError)
            else pair_result(mode, text, scores, timings)
            for text, scores in zip(texts, head_scores, strict=True)
        ]

    def _generate(self, pair: AudioPair) -> str | ItemError:
        """The assessment text, or this pair's failure; a failure of the server itself raises."""
        try:
            reply = self._client.complete(judge_messages(pair), schema={})
        except LLMReplyError as error:
            return ItemError.from_exception(error)
        text = (reply.text or "").strip()
        return strip_thinking(text) if self._strip_thinking else text

    def _heads_engine(self) -> Engine:
        if self._engine is None:
            from evalsvc.engine.engine import Engine

            self._engine = Engine.load(self._settings)
        return self._engine


def _served_artifacts(settings: Settings) -> ModelArtifacts:
    artifacts = resolve_artifacts(settings)
    if artifacts.adapter is not None:
        raise ModelLoadError(
            f"a generation server (EVALSVC_GENERATION_URL) cannot apply the LoRA adapter {artifacts.adapter}: "
            "vLLM applies none to Qwen3-Omni. Serve a merged checkpoint (`evalsvc export merged`) and set "
            "EVALSVC_MODEL to that directory, without EVALSVC_ADAPTER"
        )
    return artifacts


def _served_fingerprint(settings: Settings, artifacts: ModelArtifacts) -> ModelFingerprint:
    local = Path(artifacts.model).expanduser()
    manifest = verified_manifest(local) if local.is_dir() else None
    assert settings.generation_url and settings.generation_model  # Settings validates the pair
    backend = GenerationBackend(
        url=settings.generation_url.rstrip("/"),
        served_model=settings.generation_model,
        manifest_sha256=manifest.sha256 if manifest else None,
    )
    fingerprint = configured_fingerprint(settings)
    return replace(fingerprint, decoding=replace(fingerprint.decoding, backend=backend))


def _client_config(settings: Settings, fingerprint: ModelFingerprint) -> LLMConfig:
    decoding = fingerprint.decoding
    assert decoding.backend is not None
    return LLMConfig(
        base_url=decoding.backend.url,
        model=decoding.backend.served_model,
        temperature=decoding.temperature,
        top_p=None if decoding.greedy else decoding.top_p,
        seed=decoding.seed,
        max_tokens=decoding.max_new_tokens,
        structured_output="off",
        concurrency=settings.generation_concurrency,
        max_retries=settings.generation_max_retries,
        timeout_s=settings.generation_timeout_s,
        names=GENERATION_NAMES,
    )


def _key(settings: Settings) -> str | None:
    return settings.generation_api_key.get_secret_value() if settings.generation_api_key else None
