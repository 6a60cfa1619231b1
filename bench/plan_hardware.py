"""Which GPUs hold the 30B-A3B judge: weights per GPU from the real device-map planner, plus KV cache.

    python bench/plan_hardware.py [--new-tokens 1024] [--seconds 60]

Computed, not measured: the published thinker's architecture is built on the meta device (no
memory), the loader's own planner (`evalsvc.engine.placement.plan_device_map`) places it on each
GPU set within the default weights budget (85% of each GPU), and the vision tower it drops after
loading is subtracted from its GPU. Per item, assessment and both modes hold a KV cache for the
prompt (13 audio tokens per second of query + response audio, ~150 text tokens) and the generated
tokens; scores mode keeps no cache (one forward, use_cache off), and its activations are a few MiB
per item. `free` is what the fullest GPU has left after weights and ~1 GiB of CUDA context; each GPU
holds the KV cache of its own layers, so the batch is what the tightest GPU allows.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import torch
from accelerate.utils import compute_module_sizes
from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

from evalsvc.engine.placement import DEFAULT_WEIGHTS_SHARE, plan_device_map
from evalsvc.engine.tiny import QWEN3_OMNI_30B_A3B, build_thinker_config, build_tokenizer
from evalsvc.errors import ModelLoadError

HARDWARE = {"1 x 80 GB": [80] * 1, "2 x 48 GB": [48] * 2, "4 x 24 GB": [24] * 4, "1 x 48 GB": [48] * 1}
AUDIO_TOKENS_PER_SECOND = 13
PROMPT_TEXT_TOKENS = 150
CUDA_CONTEXT_GIB = 1.0
GIB = 2**30


def kv_bytes_per_token(config: object) -> int:
    text = config.text_config  # type: ignore[attr-defined]
    return text.num_hidden_layers * 2 * text.num_key_value_heads * text.head_dim * 2  # K and V, bf16


def gpu_of(parameter: str, plan: dict[str, int]) -> int:
    """The GPU a parameter lands on: the plan's entry for the longest module path containing it."""
    owners = [module for module in plan if module == "" or parameter.startswith(f"{module}.")]
    return plan[max(owners, key=len)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--new-tokens", type=int, default=1024, help="generated tokens per item (default 1024)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="query + response audio per item (60)")
    args = parser.parse_args()
    config = build_thinker_config(build_tokenizer(), QWEN3_OMNI_30B_A3B)
    with torch.device("meta"):
        model = Qwen3OmniMoeThinkerForConditionalGeneration(config)
    sizes = compute_module_sizes(model, dtype=torch.bfloat16)
    tokens = int(args.seconds * AUDIO_TOKENS_PER_SECOND) + PROMPT_TEXT_TOKENS + args.new_tokens
    per_item = tokens * kv_bytes_per_token(config)
    print(
        f"30B-A3B thinker: {sizes[''] / GIB:.1f} GiB in bf16 ({(sizes[''] - sizes['model.visual']) / GIB:.1f} GiB "
        f"without the vision tower); KV cache {kv_bytes_per_token(config) / 1024:.0f} KiB per token; an item of "
        f"{args.seconds:.0f} s audio + {args.new_tokens} new tokens = {tokens} tokens = {per_item / 2**20:.0f} MiB\n"
    )
    print("| GPUs | fits | weights per GPU (GiB) | least free on a GPU (GiB) | items per batch, assessment |")
    print("|---|---|---|---:|---:|")
    for name, gpus in HARDWARE.items():
        budgets = {index: int(DEFAULT_WEIGHTS_SHARE * memory * 10**9) for index, memory in enumerate(gpus)}
        try:
            plan = plan_device_map(model, budgets, torch.bfloat16)
        except ModelLoadError:
            print(f"| {name} | no | - | - | - |")
            continue
        weights: dict[int, int] = defaultdict(int)
        layers: dict[int, int] = defaultdict(int)
        for parameter_name, parameter in model.named_parameters():
            if not parameter_name.startswith("model.visual."):  # dropped after loading
                weights[gpu_of(parameter_name, plan)] += parameter.numel() * 2
        for layer in range(config.text_config.num_hidden_layers):
            layers[gpu_of(f"model.language_model.layers.{layer}.input_layernorm.weight", plan)] += 1
        share = {gpu: layers[gpu] / config.text_config.num_hidden_layers for gpu in range(len(gpus))}
        free = {
            gpu: memory * 10**9 / GIB - CUDA_CONTEXT_GIB - weights[gpu] / GIB
            for gpu, memory in enumerate(gpus)
        }
        batch = min(int(free[gpu] * GIB // (per_item * share[gpu])) for gpu in range(len(gpus)) if share[gpu])
        per_gpu = " / ".join(f"{weights[gpu] / GIB:.1f}" for gpu in range(len(gpus)))
        print(f"| {name} | yes | {per_gpu} | {min(free.values()):.1f} | {batch} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
