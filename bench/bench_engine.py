"""Scores-mode throughput of the engine on the tiny model at batch 1, 4 and 16, and peak RSS.

    python bench/bench_engine.py [--pairs 32] [--rounds 5]

Batch sizes are measured in interleaved rounds (1, 4, 16, 1, 4, 16, ...) so that the noise of a
shared machine hits them alike; the table reports medians and the batch-16 / batch-1 ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from time import perf_counter

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.engine.engine import Engine
from evalsvc.engine.types import AudioPair
from evalsvc.settings import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pairs"
BATCH_SIZES = (1, 4, 16)


def example_pairs(count: int) -> list[AudioPair]:
    """Real speech pairs from examples/pairs, repeated to `count` pairs."""
    limits = AudioLimits()
    rows = [
        json.loads(line) for line in (EXAMPLES / "manifest.jsonl").read_text().splitlines() if line.strip()
    ]
    pairs = [
        AudioPair(
            decode_audio(EXAMPLES / row["query_audio"], limits),
            decode_audio(EXAMPLES / row["response_audio"], limits),
        )
        for row in rows
    ]
    return [pairs[i % len(pairs)] for i in range(count)]


def pairs_per_second(engine: Engine, pairs: list[AudioPair], batch_size: int) -> float:
    started = perf_counter()
    for start in range(0, len(pairs), batch_size):
        engine.score(pairs[start : start + batch_size], "scores")
    return len(pairs) / (perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32, help="pairs per measurement (multiple of 16)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        engine = Engine.load(Settings(model="tiny", data_dir=Path(data_dir)))
        engine.warmup()
        pairs = example_pairs(args.pairs)
        mean_seconds = statistics.mean(p.query.duration_s + p.response.duration_s for p in pairs)
        for batch_size in BATCH_SIZES:  # untimed pass: allocator and kernel warm-up per shape
            pairs_per_second(engine, pairs[:batch_size], batch_size)
        samples: dict[int, list[float]] = {size: [] for size in BATCH_SIZES}
        for _ in range(args.rounds):
            for batch_size in BATCH_SIZES:
                samples[batch_size].append(pairs_per_second(engine, pairs, batch_size))

    medians = {size: statistics.median(values) for size, values in samples.items()}
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"tiny model, scores mode, {args.pairs} pairs x {args.rounds} rounds, mean audio {mean_seconds:.1f} s/pair"
    )
    print("| batch | pairs/s (median) | min | max |")
    print("|---:|---:|---:|---:|")
    for size in BATCH_SIZES:
        print(f"| {size} | {medians[size]:.1f} | {min(samples[size]):.1f} | {max(samples[size]):.1f} |")
    print(f"\nbatch-16 / batch-1 ratio: {medians[16] / medians[1]:.2f}x")
    print(f"peak RSS: {peak_rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
