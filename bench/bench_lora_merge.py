"""Scoring time with the LoRA adapter merged into the weights versus applied unmerged, side by side.

    python bench/bench_lora_merge.py [--sizes tiny,moe-layer] [--rounds 3] [--pairs 8] [--new-tokens 8]

Unmerged, peft applies LoRA on the fused MoE experts as W + BA rebuilt for every expert of a layer on
every forward: the cost of a full expert stack per call, prefill and every decoding step alike.
Merged (`EVALSVC_MERGE_ADAPTER`, on by default), the model is a plain one. Both engines are loaded
from the same files; rounds alternate merged and unmerged so load on the machine hits both alike.

Sizes: `tiny`, and `moe-layer`: one decoder layer of the real 30B-A3B shape (hidden 2048, 128
experts of 768, 8 active; 0.6 B expert parameters), the layer the issue measured, plus a 2-layer
audio encoder of the real width. Reported: scores mode (one forward per batch of 4) and assessment
mode (`--new-tokens` greedy tokens), median seconds per pair, and unmerged / merged.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import torch
from bench_engine import example_pairs
from bench_gpu import LARGE

from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import TINY, build_tiny_model
from evalsvc.engine.types import AudioPair
from evalsvc.settings import Mode, Settings

SIZES = {"tiny": TINY, "moe-layer": dataclasses.replace(LARGE, text_layers=1, experts=128, audio_layers=2)}
BATCH = 4


def seconds_per_pair(engine: Engine, pairs: list[AudioPair], mode: Mode) -> float:
    started = perf_counter()
    for start in range(0, len(pairs), BATCH):
        engine.score(pairs[start : start + BATCH], mode)
    return (perf_counter() - started) / len(pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,moe-layer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", choices=["bfloat16", "float32"], help="default: bfloat16 on CUDA, else float32"
    )
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    pairs = example_pairs(args.pairs)

    print(
        f"{args.device}, {args.dtype}, batch {BATCH}, {args.pairs} pairs, {args.rounds} rounds interleaved\n"
    )
    print("| size | parameters | mode | merged s/pair | unmerged s/pair | unmerged / merged |")
    print("|---|---:|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes.split(","):
            paths = build_tiny_model(
                Path(workdir) / size, seed=0, size=SIZES[size], dtype=getattr(torch, args.dtype)
            )
            settings = Settings(
                model=str(paths.model),
                adapter=paths.adapter,
                heads=paths.heads,
                device=args.device,
                dtype=args.dtype,
                max_new_tokens=args.new_tokens,
                data_dir=Path(workdir) / "data",
            )
            engines = {
                merge: Engine.load(settings.model_copy(update={"merge_adapter": merge}))
                for merge in (True, False)
            }
            parameters = engines[True].parameter_count
            for mode in ("scores", "assessment"):
                for engine in engines.values():  # untimed: allocator and kernel warm-up
                    seconds_per_pair(engine, pairs[:BATCH], mode)
                samples: dict[bool, list[float]] = {True: [], False: []}
                for _ in range(args.rounds):
                    for merge, engine in engines.items():
                        samples[merge].append(seconds_per_pair(engine, pairs, mode))
                merged, unmerged = statistics.median(samples[True]), statistics.median(samples[False])
                print(
                    f"| {size} | {parameters / 1e6:,.1f} M | {mode} | {merged:.4f} | {unmerged:.4f} "
                    f"| **{unmerged / merged:.1f}x** |"
                )
            del engines
    return 0


if __name__ == "__main__":
    sys.exit(main())
