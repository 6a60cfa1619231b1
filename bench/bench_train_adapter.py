"""Adapter training: tokens/s and peak memory, and what LoRA training of the 30B-A3B judge needs.

    python bench/bench_train_adapter.py [--size tiny|large] [--device cpu|cuda] [--dtype float32|bfloat16]
                                        [--examples 16] [--seconds 4] [--rounds 2] [--workdir DIR]
    python bench/bench_train_adapter.py --plan [--seconds 60] [--answer-tokens 400]

Measured: a random thinker of `--size` (tiny: the built-in one; large: bench_gpu.py's scaled-up
config with the 30B-A3B model's per-token shapes) is built, `--examples` assessment examples of
`--seconds` of audio (query and response together) are written, and `evalsvc train adapter` trains
one epoch on them (batch 1, no validation), with gradient checkpointing on and off, each run in its
own process, interleaved for `--rounds` rounds. Reported per run: training tokens/s (prompt, audio
and answer tokens through forward and backward, per second of optimizer steps) and peak memory: on
CUDA torch's peak allocation, on the CPU the process's peak resident set (the model, Python and
torch included).

`--plan` computes, from the published model's shapes (built on the meta device, nothing allocated),
the memory LoRA training of Qwen3-Omni-30B-A3B needs on one GPU: frozen bf16 weights (vision tower
dropped), the LoRA weights with their gradients and AdamW state in float32, and per sample the
activations with gradient checkpointing: each layer's saved input, the working set of the layer
being recomputed (attention, the top-k experts' projections, and the whole experts' W + BA that
peft's parameter LoRA forms for the layer's matmul, with its gradient) and the answer positions'
float32 logits. Computed, not measured: no GPU was lent to this project.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
from peft import get_peft_model
from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

from evalsvc.engine.adapter import lora_config_for, quiet_peft
from evalsvc.engine.tiny import (
    QWEN3_OMNI_30B_A3B,
    TINY,
    build_thinker_config,
    build_tiny_model,
    build_tokenizer,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu import LARGE

SIZES = {"tiny": TINY, "large": LARGE}
GIB = 2**30
AUDIO_TOKENS_PER_SECOND = 13
PROMPT_TEXT_TOKENS = 150
ASSESSMENT = (
    "The user sounds tired and sad and needs comfort. The response is warm and acknowledges the loss, "
    "and it could ask a gentle question.\nSCORES: NS=4 WA=4 EU=3 ES=4"
)


def write_examples(directory: Path, count: int, seconds: float) -> Path:
    rows = []
    for i in range(count):
        for role, share, hz in (("q", 0.4, 180.0 + 11 * i), ("r", 0.6, 260.0 + 7 * i)):
            t = np.arange(int(16_000 * seconds * share)) / 16_000
            soundfile.write(
                directory / f"{role}{i}.wav", (0.1 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16_000
            )
        rows.append(
            {
                "id": f"e{i}",
                "task": "assessment",
                "query_audio": f"q{i}.wav",
                "response_audio": f"r{i}.wav",
                "target": ASSESSMENT,
            }
        )
    path = directory / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def train_once(model: Path, data: Path, out: Path, device: str, dtype: str, checkpointing: bool) -> dict:
    command = [
        str(Path(sys.executable).parent / "evalsvc"), "train", "adapter", "--data", str(data), "--out", str(out),
        "--model", str(model), "--device", device, "--dtype", dtype, "--epochs", "1", "--batch-size", "1",
        "--gradient-accumulation", "4", "--validation-fraction", "0", "--no-progress",
        "--gradient-checkpointing" if checkpointing else "--no-gradient-checkpointing",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"training failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def measure(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-train-adapter-"))
    size = SIZES[args.size]
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    paths = build_tiny_model(workdir / f"model-{args.size}", size=size, dtype=torch_dtype)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    data = write_examples(data_dir, args.examples, args.seconds)
    tokens = int(args.seconds * AUDIO_TOKENS_PER_SECOND) + PROMPT_TEXT_TOKENS
    print(
        f"size {args.size}, {args.device} {args.dtype}: {args.examples} examples of {args.seconds:g} s of audio "
        f"(about {tokens} prompt tokens + the answer), one epoch, batch 1, accumulation 4"
    )
    results: dict[bool, list[dict]] = {True: [], False: []}
    for round_index in range(args.rounds):
        for checkpointing in (True, False):
            out = workdir / f"adapter-{round_index}-{int(checkpointing)}"
            results[checkpointing].append(
                train_once(paths.model, data, out, args.device, args.dtype, checkpointing)
            )
    for checkpointing, runs in results.items():
        rate = max(run["tokens_per_second"] for run in runs)
        peak = max(run["peak_memory_bytes"] for run in runs) / GIB
        kind = "peak allocated" if args.device.startswith("cuda") else "peak RSS"
        label = "on " if checkpointing else "off"
        print(
            f"gradient checkpointing {label}: {rate:8.1f} tokens/s (best of {len(runs)}), {kind} {peak:.2f} GiB"
        )
    ratio = max(r["tokens_per_second"] for r in results[False]) / max(
        r["tokens_per_second"] for r in results[True]
    )
    print(f"checkpointing off / on, tokens/s: {ratio:.2f}")


def plan(args: argparse.Namespace) -> None:
    """Memory of LoRA training of the published 30B-A3B thinker on one GPU, from its shapes."""
    config = build_thinker_config(build_tokenizer(), QWEN3_OMNI_30B_A3B)
    with torch.device("meta"):
        thinker = Qwen3OmniMoeThinkerForConditionalGeneration(config).to(torch.bfloat16)
        with quiet_peft():
            model = get_peft_model(thinker, lora_config_for(thinker))
    lora = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    base = sum(p.numel() for n, p in model.named_parameters() if ".lora_" not in n)
    vision = sum(p.numel() for p in thinker.model.visual.parameters())
    text = config.text_config
    layers, hidden, vocab = text.num_hidden_layers, text.hidden_size, text.vocab_size
    experts, active, inter = text.num_experts, text.num_experts_per_tok, text.moe_intermediate_size
    q_width, kv_width = text.num_attention_heads * text.head_dim, text.num_key_value_heads * text.head_dim
    tokens = int(args.seconds * AUDIO_TOKENS_PER_SECOND) + PROMPT_TEXT_TOKENS + args.answer_tokens
    bf16 = 2
    weights = (base - vision) * bf16
    lora_state = lora * (4 + 4 + 8)  # float32 weights, gradients, AdamW's two moments
    saved_inputs = layers * tokens * hidden * bf16
    layer_activations = (
        tokens * (4 * hidden + 2 * q_width + 2 * kv_width + 2 * experts + active * 4 * inter) * bf16
    )
    merged_experts = experts * (2 * inter * hidden + hidden * inter) * bf16  # W + BA of gate_up and down
    logits = 2 * args.answer_tokens * vocab * 4
    per_sample = saved_inputs + 2 * layer_activations + logits
    fixed = weights + lora_state + 2 * merged_experts
    rows = [
        ("frozen weights, bf16 (vision tower dropped)", weights),
        (f"LoRA: {lora / 1e9:.3f} B parameters x (weights + gradients + AdamW), fp32", lora_state),
        ("recomputed layer: experts' W + BA and its gradient (gate_up, down)", 2 * merged_experts),
        (f"per sample of {tokens} tokens: saved layer inputs ({layers} layers)", saved_inputs),
        ("per sample: recomputed layer's activations and gradients", 2 * layer_activations),
        (f"per sample: fp32 logits of {args.answer_tokens} answer tokens and their gradient", logits),
    ]
    print(
        f"LoRA training of Qwen3-Omni-30B-A3B on one GPU, computed from its shapes ({base / 1e9:.2f} B base parameters)"
    )
    for label, size in rows:
        print(f"  {label:<78} {size / GIB:7.2f} GiB")
    for batch in (1, 2, 4):
        print(
            f"  total at batch {batch}: {(fixed + batch * per_sample) / GIB:.1f} GiB (+ ~1 GiB CUDA context)"
        )
    print(f"  without gradient checkpointing every layer keeps its activations and W + BA: "
          f"{(layers * (layer_activations + merged_experts)) / GIB:.1f} GiB more per sample")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--plan", action="store_true", help="compute the 30B-A3B memory plan, measure nothing"
    )
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--seconds", type=float, help="audio per example (default: 4; --plan: 60)")
    parser.add_argument("--answer-tokens", type=int, default=400, help="answer length for --plan")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--workdir", help="where the model, data and adapters go (default: a temporary directory)"
    )
    args = parser.parse_args()
    if args.plan:
        args.seconds = args.seconds or 60.0
        plan(args)
        return 0
    args.seconds = args.seconds or 4.0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("not measured: no CUDA device here", file=sys.stderr)
        return 1
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
