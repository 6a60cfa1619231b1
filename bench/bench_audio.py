"""Audio front end throughput: evalsvc's decode + features against the librosa + Whisper baseline.

    python bench/bench_audio.py [--pairs N] [--repeats R] [--threads T] [--no-formats]

Both paths turn the same (query, response) files into model-ready log-mel features:
  ours      evalsvc.audio.decode_audio on each clip (which also validates and hashes it), then
            evalsvc.engine.features.LogMelExtractor on the pair
  baseline  librosa.load(path, sr=16000) on each clip, then WhisperFeatureExtractor on the pair the
            way Qwen3-Omni's processor calls it (padding longest, no truncation, attention mask)
The example pairs are re-encoded into a temporary directory in a mix of containers, sample rates
and channel counts (the MIX table below), the repetitions of the paths are interleaved (their order
rotated) so that a noisy machine slows all alike, and medians are reported. A third row times only
the work that both share and neither can skip (libsndfile decode + soxr resample): baseline / floor
bounds the speed-up of any front end that keeps these decoders and this resampler.

A second table repeats the three paths with every clip in one format of the mix at a time, to show
where the time goes: the ratio is a property of the format mix as much as of the front end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
import torch
from transformers import WhisperFeatureExtractor

from evalsvc.audio import SAMPLE_RATE, AudioLimits, decode_audio
from evalsvc.engine.features import LogMelExtractor

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# (extension, libsndfile subtype, sample rate, channels), assigned to the clips in turn: what users
# upload (phone and desktop recordings, 44.1/48 kHz, sometimes stereo, often compressed) next to what
# TTS systems emit (mono WAV at 16-24 kHz).
MIX: tuple[tuple[str, str, int, int], ...] = (
    ("flac", "PCM_16", 44_100, 1),
    ("wav", "PCM_16", 22_050, 1),
    ("mp3", "MPEG_LAYER_III", 44_100, 1),
    ("wav", "PCM_16", 16_000, 1),
    ("ogg", "VORBIS", 48_000, 2),
    ("wav", "PCM_16", 24_000, 1),
    ("flac", "PCM_24", 48_000, 2),
    ("mp3", "MPEG_LAYER_III", 22_050, 1),
)
Variant = tuple[str, str, int, int]
Pair = tuple[Path, Path]
LABELS = {
    "baseline": "baseline: librosa.load x2 + WhisperFeatureExtractor",
    "ours": "ours: decode_audio x2 (checks, sha256) + LogMelExtractor",
    "floor": "floor: libsndfile decode + soxr only, no features",
}


def example_pairs() -> list[Pair]:
    rows = [json.loads(line) for line in (EXAMPLES / "pairs" / "manifest.jsonl").read_text().splitlines()]
    pairs = [(EXAMPLES / "query.wav", EXAMPLES / "response.wav")]
    pairs += [(EXAMPLES / "pairs" / r["query_audio"], EXAMPLES / "pairs" / r["response_audio"]) for r in rows]
    return pairs


def reencode(pairs: list[Pair], directory: Path, variants: tuple[Variant, ...] = MIX) -> list[Pair]:
    """Give every distinct clip the next of `variants`; a clip shared by two pairs stays one file."""
    encoded: dict[Path, Path] = {}
    for clip in dict.fromkeys(path for pair in pairs for path in pair):
        extension, subtype, rate, channels = variants[len(encoded) % len(variants)]
        samples, source_rate = sf.read(clip, dtype="float32")
        samples = soxr.resample(samples, source_rate, rate, quality="VHQ")
        if channels == 2:  # a plausible stereo image: the voice slightly louder on the left
            samples = np.stack([samples, 0.8 * samples], axis=1)
        target = directory / f"{clip.stem}_{rate}_{channels}ch.{extension}"
        sf.write(target, samples, rate, subtype=subtype)
        encoded[clip] = target
    return [(encoded[query], encoded[response]) for query, response in pairs]


def make_ours() -> Callable[[Pair], tuple[torch.Tensor, torch.Tensor]]:
    limits = AudioLimits()
    extractor = LogMelExtractor(WhisperFeatureExtractor(feature_size=128))

    def ours(pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
        return extractor([decode_audio(path, limits).samples for path in pair])

    return ours


def make_baseline() -> Callable[[Pair], tuple[torch.Tensor, torch.Tensor]]:
    extractor = WhisperFeatureExtractor(feature_size=128)

    def baseline(pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
        clips = [librosa.load(path, sr=SAMPLE_RATE)[0] for path in pair]
        out = extractor(
            clips,
            sampling_rate=SAMPLE_RATE,
            padding=True,
            truncation=False,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return out["input_features"], out["attention_mask"]

    return baseline


def make_floor() -> Callable[[Pair], list[np.ndarray]]:
    def floor(pair: Pair) -> list[np.ndarray]:
        clips = []
        for path in pair:
            frames, rate = sf.read(path, dtype="float32", always_2d=True)
            mono = frames[:, 0] if frames.shape[1] == 1 else (frames[:, 0] + frames[:, 1]) / 2  # MIX: <= 2
            clips.append(
                mono if rate == SAMPLE_RATE else soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
            )
        return clips

    return floor


def seconds_per_pass(run: Callable[[Pair], object], pairs: list[Pair]) -> float:
    started = time.perf_counter()
    for pair in pairs:
        run(pair)
    return time.perf_counter() - started


def check_outputs(pairs: list[Pair]) -> tuple[float, float]:
    """Largest sample and feature differences against the baseline, clip by clip.

    Features are compared with WhisperFeatureExtractor on each clip alone, which is what Qwen3-Omni
    computes for a single clip; in a padded pair the baseline's shorter clip changes by design.
    """
    whisper, ours = WhisperFeatureExtractor(feature_size=128), LogMelExtractor(WhisperFeatureExtractor(128))
    sample_diff = feature_diff = 0.0
    for path in dict.fromkeys(path for pair in pairs for path in pair):
        mine = decode_audio(path, AudioLimits()).samples
        theirs = librosa.load(path, sr=SAMPLE_RATE)[0]
        # librosa zero-pads to ceil(n * ratio) where soxr rounds: at most one extra trailing zero.
        sample_diff = max(sample_diff, float(np.abs(mine - theirs[: len(mine)]).max()))
        reference = whisper(mine, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="pt")
        features, _ = ours([mine])
        feature_diff = max(feature_diff, float((features - reference["input_features"]).abs().max()))
    return sample_diff, feature_diff


def median_seconds(
    paths: dict[str, Callable[[Pair], object]], pairs: list[Pair], repeats: int
) -> dict[str, float]:
    """Median seconds of a pass over `pairs` for each path, the paths' order rotated every repeat."""
    for run in paths.values():
        seconds_per_pass(run, pairs)  # warm-up: imports, caches, first-call allocations
    timings: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            timings[name].append(seconds_per_pass(paths[name], pairs))
    return {name: statistics.median(times) for name, times in timings.items()}


def describe(variant: Variant) -> str:
    extension, _, rate, channels = variant
    return f"{extension.upper()} {rate / 1000:g} kHz {channels}ch"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--pairs", type=int, default=90, help="pairs per timed pass (cycled examples)")
    parser.add_argument("--repeats", type=int, default=7, help="timed passes of each path, interleaved")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for every path")
    parser.add_argument("--no-formats", action="store_true", help="skip the table format by format")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths: dict[str, Callable[[Pair], object]] = {
        "baseline": make_baseline(),
        "ours": make_ours(),
        "floor": make_floor(),
    }

    by_format: dict[Variant, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        distinct = reencode(example_pairs(), Path(tmp))
        pairs = [distinct[i % len(distinct)] for i in range(args.pairs)]
        mixed = median_seconds(paths, pairs, args.repeats)
        durations = [sf.info(path).duration for pair in distinct for path in pair]
        sample_diff, feature_diff = check_outputs(distinct)
        for index, variant in enumerate(() if args.no_formats else MIX):
            (directory := Path(tmp) / str(index)).mkdir()
            single = reencode(example_pairs(), directory, (variant,))
            by_format[variant] = median_seconds(paths, single * 2, args.repeats)

    print(f"{args.pairs} pairs per pass, {args.repeats} interleaved passes, torch threads {args.threads}")
    print(
        f"clips {min(durations):.1f}-{max(durations):.1f} s, formats in turn: {', '.join(map(describe, MIX))}\n"
    )
    print("| path | median ms / pair | pairs / s | vs baseline |")
    print("|---|---:|---:|---:|")
    for name, label in LABELS.items():
        median = mixed[name]
        ratio = mixed["baseline"] / median
        print(f"| {label} | {1e3 * median / args.pairs:.2f} | {args.pairs / median:.0f} | {ratio:.2f}x |")
    print(f"\nmax |samples - librosa.load| = {sample_diff:.1e}")
    print(f"max |features - WhisperFeatureExtractor on the clip alone| = {feature_diff:.1e}")
    if by_format:
        count = 2 * len(example_pairs())
        print(f"\nEvery clip in one format ({count} pairs per pass), ms / pair:\n")
        print("| format | baseline | ours | floor | ours vs baseline | baseline / floor |")
        print("|---|---:|---:|---:|---:|---:|")
        for variant, medians in by_format.items():
            base, ours, floor = (1e3 * medians[name] / count for name in ("baseline", "ours", "floor"))
            print(
                f"| {describe(variant)} | {base:.2f} | {ours:.2f} | {floor:.2f} | {base / ours:.2f}x | {base / floor:.2f}x |"
            )


if __name__ == "__main__":
    main()
