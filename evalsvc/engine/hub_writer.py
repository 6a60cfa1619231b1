"""Write a thinker in the layout the hub stores Qwen3-Omni in: what transformers and vLLM both load.

The published checkpoints are the full model (`Qwen3OmniMoeForConditionalGeneration`: a config with
the thinker nested in `thinker_config`), tensors under `thinker.` in the transformers 4.x names with
one tensor per expert and projection (`evalsvc.engine.layouts`), sharded safetensors files with a
`model.safetensors.index.json`. transformers 5 converts this layout on load; vLLM maps the full-model
architecture to its thinker implementation and loads exactly these names (its model registry:
`"Qwen3OmniMoeForConditionalGeneration": ("qwen3_omni_moe_thinker", ...)`).

Shards are written one at a time, each from copies of its own tensors: the fused experts are split
into views, and a shard never holds more than `max_shard_bytes`, so a 63 GB model is written without
a second copy of it in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (
    Qwen3OmniMoeCode2WavConfig,
    Qwen3OmniMoeConfig,
    Qwen3OmniMoeTalkerConfig,
    Qwen3OmniMoeThinkerConfig,
)

from evalsvc.engine.layouts import FUSED_DOWN, FUSED_GATE_UP, hub_name

INDEX_FILE = "model.safetensors.index.json"
FULL_MODEL_ARCHITECTURE = "Qwen3OmniMoeForConditionalGeneration"


def full_model_config(thinker: Qwen3OmniMoeThinkerConfig, *, enable_audio_output: bool) -> Qwen3OmniMoeConfig:
    """The hub's full-model config around `thinker` (talker and code2wav at their defaults)."""
    full = Qwen3OmniMoeConfig(
        thinker_config=thinker.to_dict(),
        talker_config=Qwen3OmniMoeTalkerConfig().to_dict(),
        code2wav_config=Qwen3OmniMoeCode2WavConfig().to_dict(),
        enable_audio_output=enable_audio_output,
    )
    full.architectures = [FULL_MODEL_ARCHITECTURE]
    return full


def hub_tensors(thinker_state: Mapping[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """A transformers 5 thinker state dict in hub names, fused experts split per expert (as views)."""
    for name, tensor in thinker_state.items():
        if name.endswith(f"mlp.experts.{FUSED_GATE_UP}"):
            experts = hub_name(name.removesuffix(f".{FUSED_GATE_UP}"))
            gate, up = tensor.chunk(2, dim=1)
            for index in range(tensor.shape[0]):
                yield f"{experts}.{index}.gate_proj.weight", gate[index]
                yield f"{experts}.{index}.up_proj.weight", up[index]
        elif name.endswith(f"mlp.experts.{FUSED_DOWN}"):
            experts = hub_name(name.removesuffix(f".{FUSED_DOWN}"))
            for index in range(tensor.shape[0]):
                yield f"{experts}.{index}.down_proj.weight", tensor[index]
        else:
            yield hub_name(name), tensor


def save_sharded(tensors: Iterable[tuple[str, torch.Tensor]], destination: Path, max_shard_bytes: int) -> int:
    """Shards named as `save_pretrained` and the hub name them, plus the index; returns the shard count."""
    shards: list[list[str]] = []
    weight_map: dict[str, str] = {}
    pending: dict[str, torch.Tensor] = {}
    pending_bytes = total = 0

    def flush() -> None:
        nonlocal pending, pending_bytes
        if pending:
            save_file(pending, str(destination / f".shard-{len(shards)}"), metadata={"format": "pt"})
            shards.append(list(pending))
            pending, pending_bytes = {}, 0

    for name, tensor in tensors:
        size = tensor.numel() * tensor.element_size()
        if pending and pending_bytes + size > max_shard_bytes:
            flush()
        pending[name] = tensor.detach().to("cpu", copy=True).contiguous()
        pending_bytes += size
        total += size
    flush()
    for number, names in enumerate(shards):
        filename = f"model-{number + 1:05d}-of-{len(shards):05d}.safetensors"
        (destination / f".shard-{number}").rename(destination / filename)
        weight_map |= dict.fromkeys(names, filename)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (destination / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return len(shards)
