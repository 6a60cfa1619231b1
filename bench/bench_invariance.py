"""How far a pair's scores move with the batch it is in, per dtype: the batch-invariance bound.

    python bench/bench_invariance.py [--dtype bfloat16] [--device cpu|cuda] [--size tiny|large] [--pairs 24]

Every pair is scored alone, then in batches of 2, 4, 8 and 16 consecutive pairs (windows every 3
pairs) and all of them in reverse order; reported is the largest difference from the pair alone, in
the scores (1-5 scale) and in the pooled features the heads read. Pairs are tones of 0.5-4.6 s, each
a different length, so every batch pads. README "Batch invariance, per dtype" quotes the CPU figures
and the bounds the tests hold; on a GPU in bf16 (`--device cuda --size large`) the same command
measures what top-8 routing near-ties do there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_gpu import SIZES

from evalsvc.audio import DecodedAudio
from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import build_tiny_model
from evalsvc.engine.types import AudioPair
from evalsvc.settings import Settings


def tone(seconds: float, frequency: float) -> DecodedAudio:
    samples = (0.1 * np.sin(2 * np.pi * frequency * np.arange(int(16_000 * seconds)) / 16_000)).astype(
        np.float32
    )
    return DecodedAudio(samples=samples, duration_s=seconds, sha256=f"tone-{seconds}-{frequency}")


def scores_of(engine: Engine, pairs: list[AudioPair]) -> torch.Tensor:
    results = engine.score(pairs, "scores")
    return torch.tensor([[r.scores.NS, r.scores.WA, r.scores.EU, r.scores.ES] for r in results if r.scores])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--pairs", type=int, default=24)
    args = parser.parse_args()
    pairs = [
        AudioPair(tone(0.5 + 0.17 * i, 180.0 + 37 * i), tone(4.6 - 0.16 * i, 270.0 + 55 * i))
        for i in range(args.pairs)
    ]
    with tempfile.TemporaryDirectory() as workdir:
        paths = build_tiny_model(Path(workdir) / "model", seed=0, size=SIZES[args.size])
        engine = Engine.load(
            Settings(
                model=str(paths.model),
                adapter=paths.adapter,
                heads=paths.heads,
                device=args.device,
                dtype=args.dtype,
                data_dir=Path(workdir) / "data",
            )
        )
        alone_scores = torch.cat([scores_of(engine, [pair]) for pair in pairs])
        alone_features = torch.cat([engine.pooled_features([pair]) for pair in pairs])
        batches = [list(range(k, k + n)) for n in (2, 4, 8, 16) for k in range(0, len(pairs) - n + 1, 3)]
        batches.append(list(range(len(pairs)))[::-1])
        worst_scores = worst_features = 0.0
        for batch in batches:
            members = [pairs[index] for index in batch]
            worst_scores = max(
                worst_scores, (scores_of(engine, members) - alone_scores[batch]).abs().max().item()
            )
            features = engine.pooled_features(members)
            worst_features = max(worst_features, (features - alone_features[batch]).abs().max().item())
    print(
        f"{args.size} model, {args.dtype}, {args.device}: {len(pairs)} pairs, {len(batches)} batches of 2-{len(pairs)}"
    )
    print(
        f"largest change from the pair alone: scores {worst_scores:.2e}, pooled features {worst_features:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
