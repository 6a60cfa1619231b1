"""Emotion labels per clip: Emotion2Vec through FunASR (the paper's model) or any transformers
audio-classification checkpoint, both mapped onto the paper's seven labels (evalsvc.judges.emotions).

FunASR is an optional extra (`pip install 'evalsvc[emotion2vec]'`): it brings modelscope, hydra and a
dozen more packages the rest of evalsvc does not need. Its `AutoModel` loads emotion2vec_plus_large
from the hub ('emotion2vec/emotion2vec_plus_large' on Hugging Face, 'iic/emotion2vec_plus_large' on
ModelScope) or a local directory (config.yaml, model.pt, tokens.txt), and `generate(...,
granularity='utterance', extract_embedding=False)` returns per clip {'labels': [...9 names...],
'scores': [...9 probabilities...]}, the names bilingual ('生气/angry', ..., '<unk>').
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification
from transformers.utils import logging as transformers_logging

from evalsvc.audio import SAMPLE_RATE, DecodedAudio
from evalsvc.errors import ModelLoadError
from evalsvc.judges.emotions import EmotionLabel, LabelMapping
from evalsvc.judges.provenance import (
    ModelProvenance,
    funasr_provenance,
    local_config,
    transformers_provenance,
)
from evalsvc.judges.speech import device_and_dtype, map_in_batches
from evalsvc.judges.tiny import ensure_tiny_emotion_classifier, tiny_emotion_dir
from evalsvc.settings import TINY_MODEL, Settings

FUNASR_EXTRA_HINT = "install the optional extra: pip install 'evalsvc[emotion2vec]'"


class EmotionLabeller(Protocol):
    provenance: ModelProvenance

    def label(self, clips: Sequence[DecodedAudio]) -> list[EmotionLabel]: ...


def load_emotion_labeller(settings: Settings) -> EmotionLabeller:
    """The configured classifier; 'auto' picks FunASR for Emotion2Vec checkpoints."""
    if _backend(settings) == "funasr":
        return FunasrEmotionLabeller.load(settings)
    return TransformersEmotionLabeller.load(settings)


def emotion_provenance(settings: Settings) -> ModelProvenance | None:
    """The classifier's provenance without loading its weights (config and weights hash only), so a
    run whose labels are all stored never loads it. None where only loading tells: a FunASR model
    (FunASR resolves and downloads its directory itself) or a hub checkpoint with no local snapshot."""
    if _backend(settings) == "funasr":
        return None
    source = _transformers_source(settings)
    config = local_config(
        "emotion", settings.emotion_model, source, settings.emotion_revision, AutoConfig.from_pretrained
    )
    return None if config is None else _transformers_provenance(settings, source, config)


def _backend(settings: Settings) -> str:
    if settings.emotion_backend != "auto":
        return settings.emotion_backend
    return "funasr" if "emotion2vec" in settings.emotion_model.lower() else "transformers"


def _transformers_source(settings: Settings) -> str:
    if settings.emotion_model == TINY_MODEL:
        root = tiny_emotion_dir(settings.data_dir, settings.tiny_seed)
        return str(ensure_tiny_emotion_classifier(root, settings.tiny_seed))
    return settings.emotion_model


def _transformers_mapping(settings: Settings, config: Any) -> LabelMapping:
    classes = [config.id2label[index] for index in range(len(config.id2label))]
    return LabelMapping.for_classes(classes, settings.emotion_label_map)


def _transformers_provenance(settings: Settings, source: str, config: Any) -> ModelProvenance:
    options = _mapping_options(_transformers_mapping(settings, config))
    return transformers_provenance("emotion", source, settings.emotion_revision, options)


class TransformersEmotionLabeller:
    """An `AutoModelForAudioClassification` checkpoint (Wav2Vec2, HuBERT, WavLM ... sequence classifiers)."""

    def __init__(
        self,
        model: Any,
        feature_extractor: Any,
        mapping: LabelMapping,
        batch_size: int,
        provenance: ModelProvenance,
    ) -> None:
        self._model = model
        self._feature_extractor = feature_extractor
        self._mapping = mapping
        # A feature extractor that returns no attention mask (group-norm Wav2Vec2 checkpoints) would
        # let padding change a clip's label; such models get one clip per forward instead.
        self._batch_size = batch_size if getattr(feature_extractor, "return_attention_mask", False) else 1
        self.provenance = provenance

    @classmethod
    def load(cls, settings: Settings) -> TransformersEmotionLabeller:
        transformers_logging.disable_progress_bar()
        source = _transformers_source(settings)
        device, dtype = device_and_dtype(settings)
        try:
            feature_extractor = AutoFeatureExtractor.from_pretrained(
                source, revision=settings.emotion_revision
            )
            model = AutoModelForAudioClassification.from_pretrained(
                source, revision=settings.emotion_revision, dtype=dtype
            )
        except (OSError, ValueError) as error:
            raise ModelLoadError(
                f"cannot load the emotion model {settings.emotion_model!r}: {error}"
            ) from error
        return cls(
            model.to(device).eval(),
            feature_extractor,
            _transformers_mapping(settings, model.config),
            settings.emotion_batch_size,
            _transformers_provenance(settings, source, model.config),
        )

    def label(self, clips: Sequence[DecodedAudio]) -> list[EmotionLabel]:
        return map_in_batches(self._label_batch, clips, self._batch_size)

    @torch.inference_mode()
    def _label_batch(self, clips: Sequence[DecodedAudio]) -> list[EmotionLabel]:
        inputs = self._feature_extractor(
            [clip.samples for clip in clips], sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt"
        )
        device = self._model.device
        tensors = {
            name: value.to(device, self._model.dtype) if value.is_floating_point() else value.to(device)
            for name, value in inputs.items()
        }
        probabilities = torch.softmax(self._model(**tensors).logits.float(), dim=-1).cpu().tolist()
        return [self._mapping.collapse(row) for row in probabilities]


class FunasrEmotionLabeller:
    """Emotion2Vec (emotion2vec_plus_large in the paper) through FunASR's `AutoModel`."""

    def __init__(
        self, model: Any, mapping: LabelMapping, batch_size: int, provenance: ModelProvenance
    ) -> None:
        self._model = model
        self._mapping = mapping
        self._batch_size = batch_size
        self.provenance = provenance

    @classmethod
    def load(cls, settings: Settings) -> FunasrEmotionLabeller:
        try:
            from funasr import AutoModel  # optional extra
        except ImportError as error:
            raise ModelLoadError(
                f"the emotion model {settings.emotion_model!r} runs on FunASR, which is not installed: "
                f"{FUNASR_EXTRA_HINT}; or set EVALSVC_EMOTION_BACKEND=transformers with a transformers "
                "audio-classification checkpoint"
            ) from error
        device, _ = device_and_dtype(settings)
        model_id = settings.emotion_model
        options: dict[str, Any] = {
            "model": model_id,
            "hub": "ms" if model_id.startswith("iic/") else "hf",
            "device": device,
            "ncpu": torch.get_num_threads(),  # FunASR otherwise sets the process's torch threads to 4
            "disable_update": True,
            "disable_pbar": True,
        }
        if settings.emotion_revision:
            options["model_revision"] = settings.emotion_revision
        try:
            model = AutoModel(**options)
        except Exception as error:  # FunASR raises bare Exceptions and AssertionErrors on a bad model
            first_line = (
                str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            )
            raise ModelLoadError(
                f"cannot load the emotion model {model_id!r} with FunASR: {first_line}"
            ) from error
        weights = Path(str(model.kwargs.get("init_param") or ""))
        if not weights.is_file():  # FunASR only prints this and goes on with random weights
            raise ModelLoadError(
                f"the emotion model {model_id!r} has no weights file (model.pt) at {weights}"
            )
        mapping = LabelMapping.for_classes(funasr_classes(model), settings.emotion_label_map)
        provenance = funasr_provenance(model_id, weights.parent, _mapping_options(mapping))
        return cls(model, mapping, settings.emotion_batch_size, provenance)

    def label(self, clips: Sequence[DecodedAudio]) -> list[EmotionLabel]:
        results = self._model.generate(
            input=[clip.samples.copy() for clip in clips],  # FunASR wraps them as (writable) tensors
            granularity="utterance",
            extract_embedding=False,
            batch_size=self._batch_size,
        )
        return [labels_from_funasr_result(result, self._mapping) for result in results]


def funasr_classes(model: Any) -> list[str]:
    """The class names of a loaded FunASR emotion model, in score order (its tokenizer's token list)."""
    tokenizer = getattr(model, "kwargs", {}).get("tokenizer")
    token_list = getattr(tokenizer, "token_list", None)
    if not token_list:
        raise ModelLoadError("the FunASR model has no label list (tokens.txt): is it an emotion2vec model?")
    return list(token_list)


def labels_from_funasr_result(result: Mapping[str, Any], mapping: LabelMapping) -> EmotionLabel:
    """One FunASR result ({'labels': names, 'scores': probabilities}) as the seven-label distribution."""
    if list(result["labels"]) != list(mapping.classes):
        raise ModelLoadError(
            f"FunASR returned the labels {list(result['labels'])}, not the model's {list(mapping.classes)}"
        )
    return mapping.collapse(result["scores"])


def _mapping_options(mapping: LabelMapping) -> dict[str, Any]:
    return {"classes": list(mapping.classes), "targets": list(mapping.targets)}
