"""LLM-judge throughput: concurrency against an API with a fixed reply latency, and the audio side.

    python bench/bench_llm_judge.py [--pairs 64] [--concurrency 8] [--latency-ms 200] [--rounds 3]

1. Judge calls against a local OpenAI-compatible server (tests/judges/openai_server.py, uvicorn on
   loopback, in its own process) that answers every call after a fixed latency: the same llm-mos and
   llm-ab pairs judged with concurrency 1 (sequential) and with --concurrency, rounds interleaved. The
   goal is a speed-up of at least 0.8 x the concurrency limit: the client must keep that many calls in
   flight, and its own work per call (prompt rendering, JSON, parsing) must stay small beside the
   latency.
2. Transcripts (tiny Whisper) and emotion labels (tiny Wav2Vec2 classifier) for the example pairs,
   batched as the settings say, beside decoding the same audio: pairs/s of each. The tiny models are
   toys; the figures show the per-pair overhead of the transformers paths, not Whisper-large speed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the scripted server lives in tests/

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.judges import JudgeSpec, LLMClient, LLMConfig, LLMJudge, PairTexts, TurnInput
from evalsvc.judges.emotion_models import TransformersEmotionLabeller
from evalsvc.judges.transcripts import WhisperTranscriber
from evalsvc.settings import Settings
from tests.judges.openai_server import ScriptedOpenAI, serving

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pairs"


def run_server(port_queue: multiprocessing.Queue, latency_s: float) -> None:
    """The scripted server in its own process, so that its event loop does not share our GIL."""
    with serving(ScriptedOpenAI(latency_s=latency_s)) as base_url:
        port_queue.put(base_url)
        threading.Event().wait()  # until terminated


def judge_rate(base_url: str, spec: JudgeSpec, pairs: list[PairTexts], concurrency: int) -> float:
    """Calls per second of one judge_many over `pairs`."""
    client = LLMClient(LLMConfig(base_url=base_url, model="judge-model", concurrency=concurrency), None)
    try:
        judge = LLMJudge(spec, client)
        started = perf_counter()
        results = judge.judge_many(pairs)
        elapsed = perf_counter() - started
    finally:
        client.close()
    assert all(result.error is None for result in results), [r.error for r in results if r.error]
    return len(pairs) * spec.calls_per_pair / elapsed


def text_pairs(count: int) -> list[PairTexts]:
    query = TurnInput("I failed my driving test again and I feel stupid.")
    good = TurnInput("GOOD: That sounds so discouraging; failing twice does not make you stupid.")
    bad = TurnInput("You should practise more.")
    return [PairTexts(query, good if i % 2 else bad, bad if i % 2 else good) for i in range(count)]


def bench_concurrency(args: argparse.Namespace) -> None:
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(
        target=run_server, args=(queue, args.latency_ms / 1000), daemon=True
    )
    server.start()
    base_url = queue.get(timeout=60)
    try:
        for judge_id in ("llm-mos", "llm-ab"):
            spec = JudgeSpec.parse(judge_id)
            sequential_pairs = text_pairs(max(4, args.pairs // args.concurrency))
            parallel_pairs = text_pairs(args.pairs)
            sequential, parallel = [], []
            for _ in range(args.rounds):
                sequential.append(judge_rate(base_url, spec, sequential_pairs, 1))
                parallel.append(judge_rate(base_url, spec, parallel_pairs, args.concurrency))
            seq, par = statistics.median(sequential), statistics.median(parallel)
            goal = 0.8 * args.concurrency
            print(
                f"| {judge_id} | {seq:.2f} | {par:.2f} | **{par / seq:.2f}x** | {goal:.1f}x | "
                f"{'met' if par / seq >= goal else 'NOT met'} |"
            )
    finally:
        server.terminate()
        server.join(10)


def timed(function: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = perf_counter()
        function()
        times.append(perf_counter() - started)
    return statistics.median(times)


def bench_audio(args: argparse.Namespace) -> None:
    rows = [
        json.loads(line) for line in (EXAMPLES / "manifest.jsonl").read_text().splitlines() if line.strip()
    ]
    paths = [(EXAMPLES / row["query_audio"], EXAMPLES / row["response_audio"]) for row in rows]
    limits = AudioLimits()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            asr_model="tiny",
            emotion_model="tiny",
            emotion_backend="transformers",
            asr_max_new_tokens=args.asr_tokens,
            asr_batch_size=8,
            emotion_batch_size=8,
        )
        transcriber = WhisperTranscriber.load(settings)
        labeller = TransformersEmotionLabeller.load(settings)
        clips = [decode_audio(path, limits) for pair in paths for path in pair]
        transcriber.transcribe(clips[:2])  # warm-up
        labeller.label(clips[:2])
        pairs = len(paths)
        decode_s = timed(lambda: [decode_audio(path, limits) for pair in paths for path in pair], args.rounds)
        asr_s = timed(lambda: transcriber.transcribe(clips), args.rounds)
        emotion_s = timed(lambda: labeller.label(clips), args.rounds)
    print(
        f"| decode both clips (`decode_audio`) | {1000 * decode_s / pairs:.1f} | {pairs / decode_s:.1f} | 1.00x |"
    )
    print(
        f"| transcripts, tiny Whisper (batch 8, {args.asr_tokens} new tokens) | {1000 * asr_s / pairs:.1f} | "
        f"{pairs / asr_s:.1f} | {asr_s / decode_s:.2f}x |"
    )
    print(
        f"| emotion labels, tiny Wav2Vec2 classifier (batch 8) | {1000 * emotion_s / pairs:.1f} | "
        f"{pairs / emotion_s:.1f} | {emotion_s / decode_s:.2f}x |"
    )
    total = decode_s + asr_s + emotion_s
    print(f"| all three | {1000 * total / pairs:.1f} | {pairs / total:.1f} | {total / decode_s:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=64, help="pairs judged at full concurrency per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--asr-tokens", type=int, default=32, help="new tokens per transcript (tiny Whisper)")
    args = parser.parse_args()
    print(f"LLM calls/s, {args.latency_ms:g} ms reply latency, median of {args.rounds} interleaved rounds\n")
    print(f"| judge | sequential calls/s | concurrency {args.concurrency} calls/s | speed-up | goal | |")
    print("|---|---:|---:|---:|---:|---|")
    bench_concurrency(args)
    print(
        f"\nAudio side on {len(list(EXAMPLES.glob('*_query.wav')))} example pairs, median of {args.rounds}\n"
    )
    print("| step | ms / pair | pairs / s | vs decode |")
    print("|---|---:|---:|---:|")
    bench_audio(args)


if __name__ == "__main__":
    main()
