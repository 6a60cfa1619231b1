"""In-process assessment throughput: pairs/s and generated tokens/s at batch 1, 8 and 32.

    python bench/bench_assessment.py                          # the tiny model on the CPU (seconds)
    python bench/bench_assessment.py --size large --device cuda --dtype bfloat16    # on a GPU

Text mode runs transformers' `generate` with static batches: every pair of a batch waits for the
batch's longest answer, and each decoding step reads the weights for a handful of tokens. This is the
baseline a generation server (vLLM, continuous batching; `evalsvc export merged`) is measured against.
The vLLM side cannot run here (no registry on the lent machine, 64 MiB carried), so the script
measures the in-process side only; BENCHMARKS.md says which ratio is not measured.

Measured on the example speech pairs, batch sizes interleaved round by round, medians over rounds:
pairs/s, and generated tokens/s: per pair, the tokens `generate` wrote up to and including its
first stop token. `--size large` is bench_gpu's scaled-up random thinker (the real per-token
shape at fewer layers and experts), built and loaded through `Engine.load` like the real model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from time import perf_counter
from typing import Any

import torch
from bench_gpu import DTYPES, SIZES, example_pairs, synchronize

from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import ModelSize, build_tiny_model
from evalsvc.engine.types import AudioPair
from evalsvc.settings import Settings

BATCH_SIZES = (1, 8, 32)


class GeneratedTokens:
    """Counts the tokens `generate` wrote per pair, up to and including its first stop token: what
    the model decoded for the answer (a batch also decodes padding after a pair's stop)."""

    def __init__(self, engine: Engine) -> None:
        loaded = engine._loaded  # the bench's only look inside: the engine reports no token counts
        self.stop = set(loaded.processor.stop_token_ids)
        self.count = 0
        generate = loaded.model.generate

        def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
            sequences = generate(*args, **kwargs)
            for row in sequences[:, kwargs["input_ids"].shape[1] :].tolist():
                self.count += next((i + 1 for i, token in enumerate(row) if token in self.stop), len(row))
            return sequences

        loaded.model.generate = counting


def measure(
    engine: Engine, tokens: GeneratedTokens, pairs: list[AudioPair], batch: int
) -> tuple[float, float]:
    """(pairs/s, generated tokens/s) of scoring `pairs` in batches of `batch`, assessment mode."""
    before = tokens.count
    synchronize(engine.device)
    started = perf_counter()
    for start in range(0, len(pairs), batch):
        engine.score(pairs[start : start + batch], "assessment")
    elapsed = perf_counter() - started
    return len(pairs) / elapsed, (tokens.count - before) / elapsed


def run(
    size: ModelSize,
    device: str,
    dtype: str,
    pairs: int,
    rounds: int,
    max_new_tokens: int,
    workdir: Path,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
) -> dict[int, tuple[float, float]]:
    paths = build_tiny_model(workdir / "model", seed=0, size=size, dtype=DTYPES[dtype])
    settings = Settings(
        model=str(paths.model),
        adapter=paths.adapter,
        heads=None,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        data_dir=workdir / "data",
    )
    engine = Engine.load(settings)
    engine.warmup()
    tokens = GeneratedTokens(engine)
    distinct = example_pairs()
    workload = [distinct[index % len(distinct)] for index in range(pairs)]
    for batch in batch_sizes:  # untimed: allocator and kernel selection for each shape
        measure(engine, tokens, workload[:batch], batch)
    samples: dict[int, list[tuple[float, float]]] = {batch: [] for batch in batch_sizes}
    for _ in range(rounds):
        for batch in batch_sizes:
            samples[batch].append(measure(engine, tokens, workload, batch))
    return {
        batch: (statistics.median(s[0] for s in values), statistics.median(s[1] for s in values))
        for batch, values in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--pairs", type=int, default=32, help="pairs per measurement (a multiple of 32)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--workdir", type=Path, help="where the random model is built (default: a temp dir)")
    args = parser.parse_args()
    if args.pairs < 32 or args.pairs % 32:
        parser.error("--pairs must be a positive multiple of 32 (the largest batch size)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_assessment: no CUDA device here; nothing measured")
        return 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        rates = run(
            SIZES[args.size],
            args.device,
            args.dtype,
            args.pairs,
            args.rounds,
            args.max_new_tokens,
            Path(workdir),
        )
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    print(
        f"{args.size} random thinker, {args.dtype}, {name}, max_new_tokens {args.max_new_tokens}, {args.pairs} pairs"
    )
    print("| batch | pairs/s | generated tokens/s |")
    print("|---:|---:|---:|")
    for batch, (pair_rate, token_rate) in rates.items():
        print(f"| {batch} | {pair_rate:.2f} | {token_rate:.1f} |")
    print(f"\nbatch-32 / batch-1 pairs/s: {rates[32][0] / rates[1][0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
