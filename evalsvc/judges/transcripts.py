"""Transcripts of both turns by Whisper through transformers, batched, with their provenance.

The LLM judges read text, so every clip is transcribed once (stored later per audio sha256 and
reused by every judge). `language='auto'` lets Whisper detect each clip's language; the detected code
is kept with the transcript. Clips over Whisper's 30 s window go through transformers' long-form
(sequential, timestamped) decoding instead of being cut: no silently truncated transcript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor, GenerationConfig
from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE
from transformers.utils import logging as transformers_logging

from evalsvc.audio import SAMPLE_RATE, DecodedAudio
from evalsvc.errors import InvalidParameter, ModelLoadError
from evalsvc.judges.provenance import ModelProvenance, local_config, transformers_provenance
from evalsvc.judges.speech import device_and_dtype, map_in_batches
from evalsvc.judges.tiny import ensure_tiny_whisper, tiny_whisper_dir
from evalsvc.settings import TINY_MODEL, Settings

WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    """Whisper's language code for the clip: the detected one with language 'auto', else the set one."""

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "language": self.language}


class WhisperTranscriber:
    """A loaded Whisper checkpoint; `transcribe` keeps the order of its input clips."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        language: str | None,
        num_beams: int,
        max_new_tokens: int,
        batch_size: int,
        provenance: ModelProvenance,
    ) -> None:
        self._model = model
        self._processor = processor
        self._language = language
        self._num_beams = num_beams
        self._max_new_tokens = max_new_tokens
        self._batch_size = batch_size
        self.provenance = provenance
        lang_to_id = getattr(model.generation_config, "lang_to_id", None) or {}
        self._code_of_token = {token_id: token.strip("<|>") for token, token_id in lang_to_id.items()}

    @classmethod
    def load(cls, settings: Settings) -> WhisperTranscriber:
        transformers_logging.disable_progress_bar()
        source = whisper_source(settings)
        device, dtype = device_and_dtype(settings)
        try:
            processor = AutoProcessor.from_pretrained(source, revision=settings.asr_revision)
            model = AutoModelForSpeechSeq2Seq.from_pretrained(
                source, revision=settings.asr_revision, dtype=dtype
            )
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"cannot load the ASR model {settings.asr_model!r}: {error}") from error
        provenance = _provenance(settings, source, model.generation_config)
        return cls(
            model.to(device).eval(),
            processor,
            language=_language_code(settings.asr_language, model.generation_config),
            num_beams=settings.asr_num_beams,
            max_new_tokens=settings.asr_max_new_tokens,
            batch_size=settings.asr_batch_size,
            provenance=provenance,
        )

    def transcribe(self, clips: Sequence[DecodedAudio]) -> list[Transcript]:
        return map_in_batches(self._transcribe_batch, clips, self._batch_size)

    @torch.inference_mode()
    def _transcribe_batch(self, clips: Sequence[DecodedAudio]) -> list[Transcript]:
        long_form = any(clip.duration_s > WINDOW_SECONDS for clip in clips)
        features = self._processor(
            [clip.samples for clip in clips],
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
            # Long-form: keep every frame (padded to the longest clip), never the first 30 s only.
            **({"truncation": False, "padding": "longest"} if long_form else {}),
        )
        input_features = features.input_features.to(self._model.device, self._model.dtype)
        languages = [self._language] * len(clips) if self._language else self._detect(input_features)
        sequences = self._model.generate(
            input_features,
            attention_mask=features.attention_mask.to(self._model.device),
            language=languages,
            task="transcribe",
            num_beams=self._num_beams,
            max_new_tokens=self._max_new_tokens,
            return_timestamps=long_form,
        )
        texts = self._processor.batch_decode(sequences, skip_special_tokens=True)
        return [Transcript(text.strip(), language) for text, language in zip(texts, languages, strict=True)]

    def _detect(self, input_features: torch.Tensor) -> list[str]:
        """Each clip's language from its first 30 s window. `generate` would detect it the same way
        (one encoder pass and one decoder step); asking first keeps the answer and serves long-form
        decoding, whose output sequences carry no language token."""
        token_ids = self._model.detect_language(input_features)
        return [self._code_of_token[int(token_id)] for token_id in token_ids.view(-1).tolist()]


def whisper_source(settings: Settings) -> str:
    """What `from_pretrained` reads: the configured checkpoint, or the tiny one (built on first use)."""
    if settings.asr_model == TINY_MODEL:
        return str(
            ensure_tiny_whisper(tiny_whisper_dir(settings.data_dir, settings.tiny_seed), settings.tiny_seed)
        )
    return settings.asr_model


def whisper_provenance(settings: Settings) -> ModelProvenance | None:
    """The ASR provenance without loading the weights (their config, hash and generation config only),
    so a run whose transcripts are all stored never loads Whisper. None for a hub checkpoint with no
    local snapshot yet: its revision is known once `load` has downloaded it."""
    source = whisper_source(settings)
    generation = local_config(
        "ASR", settings.asr_model, source, settings.asr_revision, GenerationConfig.from_pretrained
    )
    return None if generation is None else _provenance(settings, source, generation)


def _provenance(settings: Settings, source: str, generation: Any) -> ModelProvenance:
    """What a transcript depends on: the checkpoint and the decoding options `load` applies."""
    options = {
        "language": _language_code(settings.asr_language, generation) or "auto",
        "task": "transcribe",
        "num_beams": settings.asr_num_beams,
        "max_new_tokens": settings.asr_max_new_tokens,
    }
    return transformers_provenance("asr", source, settings.asr_revision, options)


def _language_code(setting: str, generation: Any) -> str | None:
    """None for 'auto'; else the code, checked against the checkpoint's language tokens (its
    generation config's `lang_to_id`)."""
    if setting == "auto":
        return None
    code = setting if setting in LANGUAGES else TO_LANGUAGE_CODE.get(setting)
    known = getattr(generation, "lang_to_id", None) or {}
    if code is None or f"<|{code}|>" not in known:
        raise InvalidParameter(
            f"EVALSVC_ASR_LANGUAGE={setting!r} is not a language of this Whisper checkpoint; use 'auto' or a "
            "code such as 'zh' or 'en'"
        )
    return code
