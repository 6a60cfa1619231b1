"""ReEmpathy data building: interleaved dialogues per second, and peak memory of a 100,000-item run.

    python bench/bench_training.py [--items 100000] [--rate-items 5000] [--rounds 3]

The tokenizer is a real fast one: a byte-level BPE (the GPT-2 / Qwen family's scheme) with an
8,000-token vocabulary, trained here with the `tokenizers` library on this repository's own text (no
hub access). Dialogues are synthetic but of realistic size: a ~30-word response transcript with
~10 s of GLM-4-Voice speech tokens (125 at 12.5 Hz), and a ~90-word assessment.

1. Throughput in process (tokenize, 13:26 text/speech stream, chunk and interleave at 15/15, render
   to text, LLaMA-Factory row): with and without speech tokens, median of `--rounds`.
2. `evalsvc build interleaved` end to end on a SQLite run of `--items` items (and of a tenth of
   that): dialogues/s (wall time less the CLI's start-up) and the child process's peak RSS. The
   baseline is the same CLI process doing nothing (`--version`: Python, torch and every command's
   imports), so the difference is what building costs; it staying flat from a tenth of the run to
   all of it is the streaming.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter

from sqlalchemy import select
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from evalsvc.engine.types import Decoding, ModelFingerprint
from evalsvc.store import (
    ItemOutcome,
    ResultRecord,
    RunItem,
    RunItemSpec,
    Store,
    add_run_items,
    content_key,
    create_run,
    ensure_model_version,
    record_outcomes,
    store_results,
)
from evalsvc.store.migrate import upgrade
from evalsvc.training.codec import TokenCodec
from evalsvc.training.datasets import InterleaveOptions, arrange, render, response_stream
from evalsvc.training.formats import AUDIO_PLACEHOLDER, sharegpt_sft
from evalsvc.training.texts import ItemTexts

REPO = Path(__file__).resolve().parent.parent
VOCAB = 8_000
SPEECH_TOKENS = 125
INSERT_BATCH = 5_000


def train_tokenizer(directory: Path) -> Path:
    """A byte-level BPE with an 8k vocabulary trained on the repository's .py and .md files."""
    corpus = [
        path.read_text(errors="ignore")
        for pattern in ("*.py", "*.md")
        for path in REPO.rglob(pattern)
        if not {".venv", ".git"} & set(path.parts)
    ]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    path = directory / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def word_list() -> list[str]:
    words = re.findall(r"[a-z]{3,12}", (REPO / "README.md").read_text().lower())
    return sorted(set(words)) or ["empathy"]


def sentence(rng: random.Random, words: list[str], count: int) -> str:
    return " ".join(rng.choice(words) for _ in range(count)).capitalize() + "."


def dialogue(rng: random.Random, words: list[str], *, speech: bool) -> tuple[str, list[int] | None, str]:
    transcript = " ".join(sentence(rng, words, 10) for _ in range(3))
    assessment = " ".join(sentence(rng, words, 15) for _ in range(6)) + "\nSCORES: NS=4 WA=3 EU=4 ES=3"
    tokens = [rng.randrange(16_384) for _ in range(SPEECH_TOKENS)] if speech else None
    return transcript, tokens, assessment


def in_process_rate(codec: TokenCodec, dialogues: list[tuple[str, list[int] | None, str]]) -> float:
    """Dialogues per second through the same functions `build_interleaved` uses, minus SQL and disk."""
    options = InterleaveOptions()
    started = perf_counter()
    for start in range(0, len(dialogues), 256):
        batch = dialogues[start : start + 256]
        encoded = codec.encode([d[0] for d in batch] + [d[2] for d in batch])
        for index, (transcript, tokens, _) in enumerate(batch):
            texts = ItemTexts(response_transcript=transcript, response_speech_tokens=tokens)
            layout = arrange(
                options, response_stream(codec, encoded[index], texts), encoded[len(batch) + index]
            )
            json.dumps(sharegpt_sft(AUDIO_PLACEHOLDER, render(codec, layout, options), ["/q.wav"]))
    return len(dialogues) / (perf_counter() - started)


def seed_run(url: str, count: int, words: list[str]) -> int:
    """A scored run of `count` items with transcripts and speech tokens in meta, assessments in results."""
    rng = random.Random(count)
    fingerprint = ModelFingerprint("bench", None, "a" * 64, None, None, "empathyeval-v1", Decoding())
    store = Store(url)
    with store.session() as session:
        run_id = create_run(session, name=f"bench-{count}", mode="both").id
        version = ensure_model_version(session, fingerprint)
    for start in range(0, count, INSERT_BATCH):
        keys = [f"item-{index:07d}" for index in range(start, min(count, start + INSERT_BATCH))]
        specs, records = [], {}
        for key in keys:
            transcript, tokens, assessment = dialogue(rng, words, speech=True)
            meta = {"response_transcript": transcript, "response_speech_tokens": tokens}
            specs.append(RunItemSpec(key, f"/audio/{key}-q.wav", f"/audio/{key}-r.wav", "sys", meta=meta))
            query, response = f"{key}-q".ljust(64, "0"), f"{key}-r".ljust(64, "0")
            records[key] = ResultRecord(
                content_key(query, response, fingerprint.key, "both"), query, response, "both",
                4.0, 3.0, 4.0, 3.0, 3.5, assessment,
            )  # fmt: skip
        with store.session() as session:
            add_run_items(session, run_id, specs)
            ids = store_results(session, version, list(records.values()))
            item_ids = dict(
                session.execute(
                    select(RunItem.item_key, RunItem.id).where(
                        RunItem.run_id == run_id, RunItem.item_key.in_(keys)
                    )
                ).all()
            )
            record_outcomes(
                session, [ItemOutcome(item_ids[key], result_id=ids[records[key].content_key]) for key in keys]
            )
    store.dispose()
    return run_id


def measure(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of `evalsvc ARGV` run as a child process."""
    started = perf_counter()
    command = [sys.executable, "-c", "import sys; from evalsvc.cli import main; sys.exit(main(sys.argv[1:]))"]
    child = subprocess.Popen([*command, *argv], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"evalsvc {' '.join(argv)} failed with {child.returncode}")
    return perf_counter() - started, usage.ru_maxrss / 1024, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="items of the streamed run")
    parser.add_argument("--rate-items", type=int, default=5_000, help="dialogues per in-process round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    words = word_list()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tokenizer = train_tokenizer(root)
        codec = TokenCodec.from_path(tokenizer)
        rng = random.Random(0)
        rows = []
        for speech in (False, True):
            dialogues = [dialogue(rng, words, speech=speech) for _ in range(args.rate_items)]
            rates = [in_process_rate(codec, dialogues) for _ in range(args.rounds)]
            label = "text + speech tokens (13:26)" if speech else "text only"
            rows.append((f"in process, {label}", f"{statistics.median(rates):,.0f}", "", ""))

        startup_s, baseline_rss, _ = measure(["--version"])
        for count in (args.items // 10, args.items):
            url = f"sqlite:///{root / f'run-{count}.sqlite3'}"
            upgrade(url)
            run_id = seed_run(url, count, words)
            out = root / f"out-{count}"
            argv = ["build", "interleaved", "--run", str(run_id), "--tokenizer", str(tokenizer)]
            seconds, rss, output = measure([*argv, "--out", str(out), "--database-url", url])
            written = json.loads(output)["written"]["reempathy.jsonl"]
            assert written == count, output
            rows.append(
                (
                    f"`evalsvc build interleaved`, {count:,} items from SQLite",
                    f"{count / (seconds - startup_s):,.0f}",
                    f"{rss:,.0f}",
                    f"{rss - baseline_rss:+,.0f}",
                )
            )

    print(f"Tokenizer: byte-level BPE, {VOCAB:,} tokens, trained on this repository's text.")
    print(
        f"CLI baseline (`evalsvc --version`): {startup_s:.1f} s, peak RSS {baseline_rss:,.0f} MiB; "
        "end-to-end rates exclude that start-up time.\n"
    )
    print("| measurement | dialogues/s | peak RSS (MiB) | over baseline (MiB) |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
