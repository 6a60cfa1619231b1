"""The judges against LitServe's OpenAI spec, a third party's chat completions server, and the whole
pipeline from audio: tiny Whisper and classifier, then the LLM judge, then the fingerprint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.judges import (
    JudgeSpec,
    LLMClient,
    LLMConfig,
    LLMJudge,
    PairTexts,
    TurnInput,
    judge_fingerprint,
    ledger_totals,
)
from evalsvc.judges.emotion_models import TransformersEmotionLabeller
from evalsvc.judges.replies import AssessmentReply, MosReply, VerdictReply, response_format
from evalsvc.judges.transcripts import WhisperTranscriber
from tests.judges.conftest import MODEL, example_clip_paths
from tests.judges.openai_server import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def litserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("litserve") / "requests.jsonl"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.judges.litserve_openai", "--port", str(port), "--log", str(log)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"LitServe exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("LitServe did not become healthy in 120 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1", log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def received(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def client(litserve: tuple[str, Path]) -> Iterator[LLMClient]:
    litserve[1].write_text("")
    client = LLMClient(LLMConfig(base_url=litserve[0], model=MODEL, max_tokens=300), "sk-local")
    yield client
    client.close()


QUERY = TurnInput("My dog died this morning.")
GOOD = TurnInput("GOOD: I'm so sorry. Losing a companion like that hurts.")
BAD = TurnInput("Dogs are nice.")


@pytest.mark.parametrize(
    ("judge_id", "schema", "expected"),
    [
        ("llm-mos", MosReply, [5, 2]),
        ("llm-ab", VerdictReply, [1, -1]),
        ("llm-assessment", AssessmentReply, [4.5, 1.5]),
    ],
)
def test_each_judge_through_litserve(
    client: LLMClient, litserve: tuple[str, Path], judge_id: str, schema: type, expected: list[float]
) -> None:
    judge = LLMJudge(JudgeSpec.parse(judge_id), client)
    results = judge.judge_many([PairTexts(QUERY, GOOD, BAD), PairTexts(QUERY, BAD, GOOD)])
    values = [
        r.to_dict().get("score", r.to_dict().get("verdict"))
        if judge_id != "llm-assessment"
        else r.assessment.scores.avg
        for r in results
    ]
    assert values == expected
    assert all(r.error is None for r in results)
    calls = [call for r in results for call in r.calls]
    assert all(call.prompt_tokens > 0 and call.completion_tokens > 0 for call in calls)
    assert all(call.finish_reason == "stop" and call.output_mode == "json_schema" for call in calls)
    requests = received(litserve[1])
    assert len(requests) == len(calls) == 2 * JudgeSpec.parse(judge_id).calls_per_pair
    for request in requests:  # as LitServe's own request model parsed it
        assert request["model"] == MODEL and request["temperature"] == 0.0
        assert request["max_completion_tokens"] == 300
        assert request["response_format"] == response_format(schema)
        assert [m["role"] for m in request["messages"]] == ["system", "user"]


def test_from_audio_to_a_fingerprinted_judgement(
    client: LLMClient, transcriber: WhisperTranscriber, labeller: TransformersEmotionLabeller
) -> None:
    clips = [decode_audio(path, AudioLimits()) for path in example_clip_paths()]
    transcripts = transcriber.transcribe(clips)
    labels = labeller.label(clips)
    turns = [TurnInput(t.text, label) for t, label in zip(transcripts, labels, strict=True)]
    pairs = [PairTexts(turns[0], turns[1], turns[2]), PairTexts(turns[2], turns[0], turns[1])]
    spec = JudgeSpec("llm-ab", with_emotion=True)
    results = LLMJudge(spec, client).judge_many(pairs)
    assert all(r.error is None and r.verdict == 0 for r in results)  # no response is marked GOOD
    assert ledger_totals(results).calls == 4
    fingerprint = judge_fingerprint(spec, client.config, transcriber.provenance, labeller.provenance)
    record = fingerprint.to_dict()
    assert record["asr"]["model_id"] == "local:tiny-whisper-seed0"
    assert record["emotion"]["model_id"] == "local:tiny-emotion-seed0"
    assert (
        fingerprint.key
        == judge_fingerprint(spec, client.config, transcriber.provenance, labeller.provenance).key
    )
