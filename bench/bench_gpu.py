"""Scores-mode throughput and model FLOP utilisation on a scaled-up random Qwen3-Omni, in bf16.

    python bench/bench_gpu.py [--size large|tiny] [--device cuda] [--dtype bfloat16]
                              [--pairs 32] [--rounds 3] [--workdir DIR]

The 30B checkpoint cannot be downloaded here, so the script builds a random thinker with the real
model's per-token shape in the text model (hidden 2048, 32 query / 4 key-value heads of 128, MoE
experts of 768 with 8 active per token) and in the audio encoder (d_model 1280, 20 heads, FFN 5120),
at fewer layers and experts (`LARGE`), writes it with the tokenizer, a LoRA adapter and heads, and
loads it through `Engine.load`: the code path of the real model.

Measured, batch sizes interleaved round by round, on the example speech pairs:
- pairs/s in scores mode at batch 1, 4 and 16, and peak device memory;
- model FLOPs per pair: `torch.utils.flop_counter.FlopCounterMode` over a batch-1 call of each
  distinct pair (the matmuls, convolutions and attention the model really runs), averaged;
- the device's matrix rate: the best of repeated square matmuls in the benchmark's dtype;
- MFU = FLOPs per pair x pairs/s / matrix rate. Padding in a batch is work but not model FLOPs.

`--size tiny --device cpu --dtype float32` runs the same steps on the built-in tiny size, in seconds:
how the script is checked without a GPU (tests/engine/test_bench_gpu.py). Without `--device` and without
CUDA it measures nothing and says so (`make bench` on a CPU machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import torch
from torch.utils.flop_counter import FlopCounterMode

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import TINY, ModelSize, build_tiny_model
from evalsvc.engine.types import AudioPair
from evalsvc.settings import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pairs"
BATCH_SIZES = (1, 4, 16)
LARGE = ModelSize(
    text_hidden=2048,
    text_layers=8,
    attention_heads=32,
    kv_heads=4,
    head_dim=128,
    intermediate=6144,
    moe_intermediate=768,
    experts=32,
    experts_per_token=8,
    audio_layers=8,
    audio_hidden=1280,
    audio_heads=20,
    audio_ffn=5120,
    audio_downsample_hidden=480,
)
SIZES = {"tiny": TINY, "large": LARGE}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Report:
    pairs_per_s: dict[int, float]
    flops_per_pair: float
    matrix_flops_per_s: float
    peak_memory_gib: float | None
    parameters: int

    def mfu(self, batch_size: int) -> float:
        return self.flops_per_pair * self.pairs_per_s[batch_size] / self.matrix_flops_per_s


def example_pairs() -> list[AudioPair]:
    limits = AudioLimits()
    rows = [json.loads(line) for line in (EXAMPLES / "manifest.jsonl").read_text().splitlines() if line]
    return [
        AudioPair(
            decode_audio(EXAMPLES / row["query_audio"], limits),
            decode_audio(EXAMPLES / row["response_audio"], limits),
        )
        for row in rows
    ]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matrix_flops_per_s(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 20) -> float:
    """The best rate of `repeats` back-to-back square matmuls: what "100% utilisation" means here."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    best = 0.0
    for _ in range(3):
        torch.matmul(a, b)  # warm-up: kernel choice, clocks
        synchronize(device)
        started = perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        synchronize(device)
        best = max(best, 2 * size**3 * repeats / (perf_counter() - started))
    return best


def flops_per_pair(engine: Engine, pairs: list[AudioPair]) -> float:
    """Mean FLOPs the model runs for one pair alone (batch 1), over the distinct pairs."""
    counts = []
    for pair in pairs:
        with FlopCounterMode(display=False) as counter:
            engine.score([pair], "scores")
        counts.append(counter.get_total_flops())
    return statistics.mean(counts)


def pairs_per_second(score: Callable[[list[AudioPair]], object], pairs: list[AudioPair], batch: int) -> float:
    started = perf_counter()
    for start in range(0, len(pairs), batch):
        score(pairs[start : start + batch])  # returns Python floats: the device has finished
    return len(pairs) / (perf_counter() - started)


def run(
    size: ModelSize, device: torch.device, dtype: torch.dtype, pairs: int, rounds: int, workdir: Path
) -> Report:
    paths = build_tiny_model(workdir / "model", seed=0, size=size, dtype=dtype)
    settings = Settings(
        model=str(paths.model),
        adapter=paths.adapter,
        heads=paths.heads,
        merge_adapter=True,  # how a serving deployment runs: LoRA folded into the weights
        device=str(device),
        dtype=next(name for name, value in DTYPES.items() if value == dtype),
        data_dir=workdir / "data",
    )
    engine = Engine.load(settings)
    engine.warmup()
    distinct = example_pairs()
    workload = [distinct[index % len(distinct)] for index in range(pairs)]

    def score(batch: list[AudioPair]) -> object:
        return engine.score(batch, "scores")

    for batch_size in BATCH_SIZES:  # untimed: allocator and kernel selection for each shape
        pairs_per_second(score, workload[:batch_size], batch_size)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    samples: dict[int, list[float]] = {batch_size: [] for batch_size in BATCH_SIZES}
    for _ in range(rounds):
        for batch_size in BATCH_SIZES:
            samples[batch_size].append(pairs_per_second(score, workload, batch_size))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Report(
        pairs_per_s={batch_size: statistics.median(values) for batch_size, values in samples.items()},
        flops_per_pair=flops_per_pair(engine, distinct),
        matrix_flops_per_s=matrix_flops_per_s(device, dtype, 8192 if device.type == "cuda" else 1024),
        peak_memory_gib=peak,
        parameters=engine.parameter_count,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="large")
    parser.add_argument("--device", help="default: cuda; without CUDA the benchmark says so and stops")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    parser.add_argument("--pairs", type=int, default=32, help="pairs per measurement (multiple of 16)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="where the random model is built (default: a temp dir)")
    args = parser.parse_args()
    if args.pairs < 16 or args.pairs % 16:
        parser.error("--pairs must be a positive multiple of 16 (the largest batch size)")
    if args.device is None and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured (--device cpu runs it on the CPU anyway)")
        return 0
    device, dtype = torch.device(args.device or "cuda"), DTYPES[args.dtype]

    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        report = run(SIZES[args.size], device, dtype, args.pairs, args.rounds, Path(workdir))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.size} random thinker ({report.parameters / 1e6:,.1f} M parameters), {args.dtype}, {name}")
    print(f"model FLOPs per pair (batch 1): {report.flops_per_pair / 1e9:,.2f} GFLOP")
    print(f"measured {args.dtype} matmul rate: {report.matrix_flops_per_s / 1e12:,.2f} TFLOP/s\n")
    print("| batch | pairs/s | model TFLOP/s | MFU |")
    print("|---:|---:|---:|---:|")
    for batch_size, rate in report.pairs_per_s.items():
        achieved = report.flops_per_pair * rate / 1e12
        print(f"| {batch_size} | {rate:.1f} | {achieved:.3f} | {100 * report.mfu(batch_size):.1f}% |")
    print(f"\nbatch-16 / batch-1: {report.pairs_per_s[16] / report.pairs_per_s[1]:.2f}x")
    if report.peak_memory_gib is not None:
        print(f"peak device memory: {report.peak_memory_gib:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
