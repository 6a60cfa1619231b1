"""Synthesise the committed example clips with espeak-ng.

Only developers who want to change the examples need this script (and espeak-ng): its outputs are
committed, so users and CI never run it. From the repository root:

    sudo apt-get install espeak-ng        # once
    python examples/make_examples.py

It rewrites
  examples/query.wav, examples/response.wav   a sad user query and an empathetic reply (espeak's
                                              native 22.05 kHz, so the demo exercises resampling)
  examples/pairs/*.wav                        four queries with different emotions, each answered by
                                              a warm and a cold system (16 kHz mono, to stay small)
  examples/pairs/manifest.jsonl               the eight pairs, in the bulk-run manifest format (the
                                              warm reply is each pair's A/B reference)

Synthetic speech carries little real emotion; the clips are for demos and smoke tests, not for
judging the judge.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "pairs"
MIN_SECONDS, MAX_SECONDS = 2.0, 8.0
MAX_MAIN_BYTES, MAX_PAIR_BYTES = 300_000, 200_000


@dataclass(frozen=True)
class Voice:
    """espeak-ng flags: voice+variant, speed (words per minute) and pitch (0-99)."""

    name: str
    speed: int
    pitch: int


SAD = Voice("en-us+f3", 140, 35)
ANXIOUS = Voice("en-gb+m3", 185, 70)
ANGRY = Voice("en-us+m7", 175, 60)
HAPPY = Voice("en-gb+f4", 170, 80)
GRIEF = Voice("en-us+m1", 130, 30)
WARM = Voice("en-gb+f2", 150, 45)
COLD = Voice("en-us+m4", 175, 50)

MAIN_QUERY = ("I failed my final exam today. I studied for weeks, and I still failed.", SAD)
MAIN_RESPONSE = ("I'm so sorry. That really hurts after all your hard work. Do you want to talk?", WARM)

# (pair stem, query emotion, query text + voice, warm reply, cold reply)
SCENARIOS: tuple[tuple[str, str, tuple[str, Voice], str, str], ...] = (
    (
        "pet",
        "sad",
        ("My dog died this morning. He was with me for twelve years.", GRIEF),
        "Oh, I'm so sorry. Twelve years is a lot of love. It's okay to grieve.",
        "Dogs usually live ten to thirteen years, so that is a normal lifespan.",
    ),
    (
        "interview",
        "anxious",
        ("I have a job interview tomorrow and I can't stop shaking. What if I mess it up?", ANXIOUS),
        "Feeling nervous is normal. They invited you for a reason. Shall we practise?",
        "Prepare answers to common questions and arrive on time.",
    ),
    (
        "flight",
        "angry",
        ("They cancelled my flight again! I have been stuck at this airport for nine hours!", ANGRY),
        "Nine hours! No wonder you're furious. Let's find the fastest way home.",
        "Flight cancellations are common. Check the airline website.",
    ),
    (
        "promotion",
        "happy",
        ("Guess what? I finally got the promotion I have worked toward for three years!", HAPPY),
        "That's wonderful! Congratulations, you truly earned it. How will you celebrate?",
        "Okay. Promotions usually come with more responsibility.",
    ),
)


def synthesise(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Return espeak-ng's mono int16 samples and rate; `--stdout` keeps temp files out of the tree."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="int16")
    return samples, rate


def write_clip(path: Path, text: str, voice: Voice, rate: int | None, max_bytes: int) -> None:
    """Write 16-bit PCM, resampled to `rate` when given, and refuse clips outside the agreed bounds."""
    samples, native_rate = synthesise(text, voice)
    if rate is not None and rate != native_rate:
        samples = soxr.resample(samples, native_rate, rate, quality="HQ")
    out_rate = rate or native_rate
    sf.write(path, samples, out_rate, subtype="PCM_16")
    seconds, size = len(samples) / out_rate, path.stat().st_size
    if not (MIN_SECONDS <= seconds <= MAX_SECONDS and size < max_bytes):
        raise SystemExit(f"{path.name}: {seconds:.2f} s, {size} bytes; shorten the text or speak faster")
    print(f"{path.relative_to(HERE.parent)}  {seconds:.2f} s  {size // 1024} KiB  [{voice.name}]")


def main() -> None:
    write_clip(HERE / "query.wav", *MAIN_QUERY, rate=None, max_bytes=MAX_MAIN_BYTES)
    write_clip(HERE / "response.wav", *MAIN_RESPONSE, rate=None, max_bytes=MAX_MAIN_BYTES)

    PAIRS.mkdir(exist_ok=True)
    rows = []
    for stem, emotion, (query_text, query_voice), warm_text, cold_text in SCENARIOS:
        query_file = f"{stem}_query.wav"
        write_clip(PAIRS / query_file, query_text, query_voice, rate=16_000, max_bytes=MAX_PAIR_BYTES)
        for system, text, voice in (("warm", warm_text, WARM), ("cold", cold_text, COLD)):
            response_file = f"{stem}_{system}.wav"
            write_clip(PAIRS / response_file, text, voice, rate=16_000, max_bytes=MAX_PAIR_BYTES)
            rows.append(
                {
                    "id": f"{stem}-{system}",
                    "query_audio": query_file,
                    "response_audio": response_file,
                    "system": f"{system}-bot",
                    "dataset": "examples",
                    "query_emotion": emotion,
                    "reference_audio": f"{stem}_warm.wav",  # the ground truth of the A/B judges
                }
            )
    manifest = PAIRS / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{manifest.relative_to(HERE.parent)}  {len(rows)} pairs")


if __name__ == "__main__":
    main()
