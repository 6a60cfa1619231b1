"""Resolve settings into concrete artefacts and load them: thinker, adapter, heads, processor.

The 30B checkpoint and the built-in tiny one go through the same `from_pretrained` calls; `tiny` only
changes where the files come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import Qwen3OmniMoeThinkerForConditionalGeneration
from transformers.utils import logging as transformers_logging

from evalsvc.engine.adapter import apply_adapter
from evalsvc.engine.artifacts import decoding_from_settings, resolve_artifacts
from evalsvc.engine.fingerprint import build_fingerprint
from evalsvc.engine.heads import ScoreHeads
from evalsvc.engine.inputs import AudioPromptProcessor
from evalsvc.engine.types import ModelFingerprint
from evalsvc.errors import InvalidParameter, ModelLoadError
from evalsvc.settings import Settings


@dataclass
class LoadedModel:
    model: nn.Module
    """The thinker, possibly wrapped by peft; used for `generate`."""
    core: nn.Module
    """The thinker's inner model (audio merge + language model, no LM head): hidden states only."""
    processor: AudioPromptProcessor
    heads: ScoreHeads | None
    fingerprint: ModelFingerprint
    device: torch.device
    dtype: torch.dtype


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameter(f"device {name!r} was requested but CUDA is not available; use cpu or auto")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_model(settings: Settings) -> LoadedModel:
    # Progress bars on stderr are noise in a service log and in the CLI's output.
    transformers_logging.disable_progress_bar()
    artifacts = resolve_artifacts(settings)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    if _looks_like_local_path(artifacts.model) and not Path(artifacts.model).expanduser().is_dir():
        raise ModelLoadError(f"model directory {artifacts.model} does not exist")
    for label, path in (("adapter", artifacts.adapter), ("heads", artifacts.heads)):
        if path is not None and not path.is_dir():
            raise ModelLoadError(f"{label} directory {path} does not exist")
    try:
        thinker = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(
            artifacts.model, revision=artifacts.revision, dtype=dtype
        )
        processor = AudioPromptProcessor.from_pretrained(
            artifacts.model, artifacts.revision, n_window=thinker.config.audio_config.n_window
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load model {artifacts.model!r}: {error}") from error
    core = thinker.model
    model: nn.Module = thinker
    if artifacts.adapter is not None:
        model = apply_adapter(thinker, artifacts.adapter, merge=settings.merge_adapter)
        # Unmerged LoRA layers are injected in place, so `core` still runs through them; a merge
        # returns the base model with updated weights, whose inner model is `core` as well.
    fingerprint = build_fingerprint(
        artifacts.model,
        artifacts.revision,
        artifacts.adapter,
        artifacts.heads,
        decoding_from_settings(settings),
    )
    heads = (
        ScoreHeads.load(artifacts.heads, expected_backbone=fingerprint.backbone) if artifacts.heads else None
    )
    model.to(device).eval()
    if heads is not None:
        heads.to(device)
    return LoadedModel(model, core, processor, heads, fingerprint, device, dtype)


def _looks_like_local_path(model: str) -> bool:
    """A hub id is `name` or `org/name`; anything else was meant as a directory on this machine."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1
