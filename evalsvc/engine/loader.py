"""Resolve settings into concrete artefacts and load them: thinker, adapter, heads, processor.

The 30B checkpoint and the built-in tiny one go through the same `from_pretrained` calls; `tiny` only
changes where the files come from. Weights are loaded with a device map (`evalsvc.engine.placement`)
so they go from the checkpoint straight to their GPU(s); the hub's layout (full model, nested
`thinker_config`, `thinker.` keys, per-expert weights, talker tensors) is converted by transformers
on the way. The vision tower, which a judge of audio never runs, is dropped once loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, Qwen3OmniMoeThinkerForConditionalGeneration
from transformers.utils import is_flash_attn_2_available
from transformers.utils import logging as transformers_logging

from evalsvc.engine.adapter import apply_adapter
from evalsvc.engine.artifacts import fingerprint_of, resolve_artifacts
from evalsvc.engine.heads import ScoreHeads
from evalsvc.engine.inputs import AudioPromptProcessor
from evalsvc.engine.placement import (
    DEFAULT_WEIGHTS_SHARE,
    Placement,
    parse_memory,
    parse_placement,
    plan_device_map,
)
from evalsvc.engine.profiles import ModelProfile
from evalsvc.engine.types import ModelFingerprint
from evalsvc.errors import ModelLoadError
from evalsvc.settings import Settings

THINKER_MODEL_TYPE = "qwen3_omni_moe_thinker"
FULL_MODEL_TYPE = "qwen3_omni_moe"


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
    """Where inputs go: the device of the embeddings (the first GPU of a spread model)."""
    dtype: torch.dtype
    profile: ModelProfile


def resolve_dtype(name: str, placement: Placement) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if placement.kind == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_attn_implementation(name: str, placement: Placement) -> str:
    """'auto': flash-attention 2 on CUDA when the flash-attn package is installed, else PyTorch's sdpa."""
    if name != "auto":
        return name
    return "flash_attention_2" if placement.kind == "cuda" and is_flash_attn_2_available() else "sdpa"


def load_model(settings: Settings) -> LoadedModel:
    # Progress bars on stderr are noise in a service log and in the CLI's output.
    transformers_logging.disable_progress_bar()
    artifacts = resolve_artifacts(settings)
    placement = parse_placement(settings.device, torch.cuda.is_available())
    dtype = resolve_dtype(settings.dtype, placement)
    for label, path in (("adapter", artifacts.adapter), ("heads", artifacts.heads)):
        if path is not None and not path.is_dir():
            raise ModelLoadError(f"{label} directory {path} does not exist")
    try:
        thinker = load_thinker(
            artifacts.model,
            artifacts.revision,
            placement,
            dtype,
            attn_implementation=resolve_attn_implementation(settings.attn_implementation, placement),
            max_gpu_memory=settings.max_gpu_memory,
        )
        processor = AudioPromptProcessor.from_pretrained(
            artifacts.model,
            artifacts.revision,
            n_window=thinker.config.audio_config.n_window,
            stop_token_ids=thinker.generation_config.eos_token_id,
            strip_thinking=artifacts.profile.strips_thinking,
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load model {artifacts.model!r}: {error}") from error
    core = thinker.model
    model: nn.Module = thinker
    if artifacts.adapter is not None:
        model = apply_adapter(thinker, artifacts.adapter, merge=settings.merge_adapter)
        # Unmerged LoRA layers are injected in place, so `core` still runs through them; a merge
        # returns the base model with updated weights, whose inner model is `core` as well.
    fingerprint = fingerprint_of(artifacts, settings)
    heads = (
        ScoreHeads.load(artifacts.heads, expected_backbone=fingerprint.backbone) if artifacts.heads else None
    )
    device = thinker.get_input_embeddings().weight.device
    model.eval()
    if heads is not None:
        heads.to(device)
    return LoadedModel(model, core, processor, heads, fingerprint, device, dtype, artifacts.profile)


def load_thinker(
    model: str,
    revision: str | None,
    placement: Placement,
    dtype: torch.dtype,
    *,
    attn_implementation: str,
    max_gpu_memory: str | None,
    keep_vision_tower: bool = False,
) -> Qwen3OmniMoeThinkerForConditionalGeneration:
    """The thinker of a Qwen3-Omni checkpoint (hub full-model layout or thinker alone), on `placement`;
    `keep_vision_tower` for a checkpoint written back whole (`evalsvc export merged`)."""
    config = AutoConfig.from_pretrained(model, revision=revision)
    if config.model_type == FULL_MODEL_TYPE:
        config = config.thinker_config
    elif config.model_type != THINKER_MODEL_TYPE:
        raise ModelLoadError(
            f"{model!r} is a {config.model_type!r} checkpoint, not Qwen3-Omni ({FULL_MODEL_TYPE} or {THINKER_MODEL_TYPE})"
        )
    thinker = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(
        model,
        config=config,
        revision=revision,
        dtype=dtype,
        device_map=device_map_for(config, placement, dtype, max_gpu_memory),
        attn_implementation=attn_implementation,
    )
    if not keep_vision_tower:
        drop_vision_tower(thinker)
    return thinker


def device_map_for(
    config: object, placement: Placement, dtype: torch.dtype, max_gpu_memory: str | None
) -> dict[str, int | str]:
    """CPU and MPS take the whole model; on CUDA the map is planned within each GPU's weights budget,
    so a model that cannot fit is refused before a byte is read."""
    if placement.kind != "cuda":
        return {"": placement.kind}
    budgets = {
        gpu: parse_memory(max_gpu_memory)
        if max_gpu_memory
        else int(DEFAULT_WEIGHTS_SHARE * torch.cuda.get_device_properties(gpu).total_memory)
        for gpu in placement.gpus
    }
    with torch.device("meta"):
        skeleton = Qwen3OmniMoeThinkerForConditionalGeneration(config)
    return dict(plan_device_map(skeleton, budgets, dtype))


def drop_vision_tower(thinker: Qwen3OmniMoeThinkerForConditionalGeneration) -> None:
    """Free the vision tower (0.54 B parameters, 1.08 GB in bf16 on the 30B model): audio-only inputs
    never reach it, so the judge has no use for it."""
    thinker.model.visual = None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
