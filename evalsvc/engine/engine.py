"""The one scoring function every path (CLI, HTTP model tier, bulk workers) goes through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from time import perf_counter

import numpy as np
import torch

from evalsvc.audio import SAMPLE_RATE, DecodedAudio
from evalsvc.engine.heads import Pooling, pool_hidden_states
from evalsvc.engine.inputs import ModelInputs
from evalsvc.engine.loader import LoadedModel, load_model
from evalsvc.engine.prompt import pair_result
from evalsvc.engine.types import MODES, AudioPair, ModelFingerprint, PairResult, Scores
from evalsvc.errors import InvalidParameter, ModelLoadError
from evalsvc.settings import Mode, Settings


class Engine:
    """EmpathyEval: audio pairs in, scores (heads or parsed text) and/or an assessment out."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self.fingerprint: ModelFingerprint = loaded.fingerprint

    @classmethod
    def load(cls, settings: Settings) -> Engine:
        return cls(load_model(settings))

    @property
    def has_heads(self) -> bool:
        return self._loaded.heads is not None

    @property
    def device(self) -> torch.device:
        return self._loaded.device

    @property
    def parameter_count(self) -> int:
        """Parameters of the loaded thinker (with the LoRA weights when they are not merged; heads
        not counted): the size a benchmark reports."""
        return sum(parameter.numel() for parameter in self._loaded.model.parameters())

    def warmup(self) -> None:
        """Run one short pair through every stage so a broken setup fails at start, not on a request."""
        tone = np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE).astype(np.float32) * 0.1
        clip = DecodedAudio(samples=tone, duration_s=0.5, sha256="warmup")
        try:
            self._forward_scores(
                self._loaded.processor([AudioPair(clip, clip)]).to(self.device, self._loaded.dtype)
            )
        except RuntimeError as error:
            raise ModelLoadError(f"model warm-up failed: {error}") from error

    @torch.inference_mode()
    def pooled_features(self, pairs: Sequence[AudioPair], pooling: Pooling = "mean") -> torch.Tensor:
        """Pooled last-layer hidden states [pairs, hidden] in float32: what heads are fitted on."""
        inputs = self._loaded.processor(pairs).to(self.device, self._loaded.dtype)
        return pool_hidden_states(self._forward_scores(inputs), inputs.attention_mask, pooling).cpu()

    @torch.inference_mode()
    def score(self, pairs: Sequence[AudioPair], mode: Mode) -> list[PairResult]:
        """Score a batch; each pair's result is independent of the others in the batch."""
        if mode not in MODES:
            raise InvalidParameter(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not pairs:
            return []
        started = perf_counter()
        inputs = self._loaded.processor(pairs).to(self.device, self._loaded.dtype)
        features_done = perf_counter()

        texts: list[str] | None = None
        head_scores: list[Scores] | None = None
        if mode == "scores" and self.has_heads:
            head_scores = self._heads(self._forward_scores(inputs), inputs.attention_mask)
        else:
            capture = mode == "both" and self.has_heads
            texts, prefill_hidden = self._generate(inputs, capture_prefill=capture)
            if prefill_hidden is not None:
                head_scores = self._heads(prefill_hidden, inputs.attention_mask)
        finished = perf_counter()

        timings = {
            "features_ms": (features_done - started) * 1e3,
            "model_ms": (finished - features_done) * 1e3,
            "total_ms": (finished - started) * 1e3,
        }
        return [
            pair_result(mode, texts[i] if texts else None, head_scores[i] if head_scores else None, timings)
            for i in range(len(pairs))
        ]

    def _forward_scores(self, inputs: ModelInputs) -> torch.Tensor:
        """Last-layer hidden states from one forward pass; the LM head and other layers are skipped."""
        return self._loaded.core(**inputs.as_kwargs(), use_cache=False).last_hidden_state

    def _heads(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> list[Scores]:
        heads = self._loaded.heads
        assert heads is not None
        pooled = pool_hidden_states(hidden, attention_mask, heads.config.pooling)
        values = heads(pooled.to(self.device)).cpu().tolist()  # the heads sit on the inputs' device
        return [Scores.from_values(row) for row in values]

    def _generate(
        self, inputs: ModelInputs, *, capture_prefill: bool
    ) -> tuple[list[str], torch.Tensor | None]:
        decoding = self.fingerprint.decoding
        processor = self._loaded.processor
        options: dict[str, object] = {
            "max_new_tokens": decoding.max_new_tokens,
            "do_sample": not decoding.greedy,
            "eos_token_id": processor.stop_token_ids,
            "pad_token_id": processor.pad_token_id,
        }
        if not decoding.greedy:
            options |= {"temperature": decoding.temperature, "top_p": decoding.top_p}
        else:
            options |= {"temperature": None, "top_p": None, "top_k": None}
        with self._seeded(decoding.seed), self._prefill_capture(capture_prefill) as captured:
            sequences = self._loaded.model.generate(**inputs.as_kwargs(), **options)
        new_tokens = sequences[:, inputs.input_ids.shape[1] :]
        return processor.decode(new_tokens), (captured[0] if captured else None)

    @contextlib.contextmanager
    def _prefill_capture(self, enabled: bool) -> Iterator[list[torch.Tensor]]:
        """Keep the last hidden state of generate's first (prefill) forward, for the heads.

        The heads then score exactly the pass that starts the generation instead of a second forward.
        """
        captured: list[torch.Tensor] = []
        if not enabled:
            yield captured
            return

        def keep_first(_module: torch.nn.Module, _args: object, output: object) -> None:
            if not captured:
                captured.append(output.last_hidden_state)  # type: ignore[attr-defined]

        handle = self._loaded.core.register_forward_hook(keep_first)
        try:
            yield captured
        finally:
            handle.remove()

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Sampling with a seed is reproducible without disturbing the process-wide RNG."""
        if seed is None:
            yield
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
