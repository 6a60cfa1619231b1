"""The generation-server backend against a real OpenAI-compatible server on loopback: the wire format
(audio parts checked on the server side), the fingerprint, heads in process, and failure codes."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from evalsvc.bulk.scorers import build_item_scorer, is_transient
from evalsvc.engine.artifacts import configured_fingerprint
from evalsvc.engine.engine import Engine
from evalsvc.engine.merge_manifest import MergeManifest
from evalsvc.engine.prompt import SYSTEM_TEXT, user_text_pieces
from evalsvc.engine.served import ServedJudge, judge_fingerprint, load_judge
from evalsvc.errors import (
    LLMModelUnavailable,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
    LLMUnreachable,
    ModelLoadError,
)
from evalsvc.scoring import is_cacheable
from evalsvc.settings import Settings
from evalsvc.store import Store
from tests.helpers import tone_pair
from tests.judges.openai_server import Failure, Hang, Reply, ScriptedOpenAI, free_port, serving

SERVED = "empathyeval-merged"
ASSESSMENT = "The user sounds tired and needs comfort.\nThe response is warm.\nSCORES: NS=4 WA=3 EU=5 ES=2"


def answer(body: dict[str, Any], _: int) -> Reply:
    return Reply(ASSESSMENT)


@contextmanager
def served_judge(settings: Settings, server: ScriptedOpenAI, **changes: Any) -> Iterator[ServedJudge]:
    with serving(server) as base_url:
        update = {
            "generation_url": base_url,
            "generation_model": SERVED,
            "generation_max_retries": 0,
        } | changes
        judge = ServedJudge(settings.model_copy(update=update))
        try:
            yield judge
        finally:
            judge.close()


def decoded_wav(part: dict[str, Any]) -> np.ndarray:
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(part["input_audio"]["data"])), dtype="float32")
    assert rate == 16_000
    return samples


def test_request_carries_the_judge_prompt_and_both_clips(merged_settings: Settings) -> None:
    server = ScriptedOpenAI(answer, models=(SERVED,))
    pair = tone_pair(1.0, 2.0)
    with served_judge(merged_settings, server) as judge:
        [result] = judge.score([pair], "assessment")
    assert result.assessment == ASSESSMENT and result.scores is None and result.error is None
    [body] = server.requests
    assert body["model"] == SERVED
    assert body["temperature"] == 0.0 and "top_p" not in body
    assert body["max_completion_tokens"] == merged_settings.max_new_tokens
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM_TEXT}
    assert user["role"] == "user"
    parts = user["content"]
    assert [part["type"] for part in parts] == ["text", "input_audio", "text", "input_audio", "text"]
    assert tuple(parts[i]["text"] for i in (0, 2, 4)) == user_text_pieces()
    assert np.array_equal(decoded_wav(parts[1]), pair.query.samples)  # the exact samples, losslessly
    assert np.array_equal(decoded_wav(parts[3]), pair.response.samples)
    assert server.authorizations == ["Bearer EMPTY"]  # vLLM's keyless default


def test_scores_come_from_the_score_line_or_from_heads_in_process(merged_settings: Settings) -> None:
    pairs = [tone_pair(1.0, 2.0), tone_pair(2.5, 0.8, 300.0)]
    in_process = Engine.load(merged_settings).score(pairs, "scores")
    server = ScriptedOpenAI(answer, models=(SERVED,))
    with served_judge(merged_settings.model_copy(update={"heads": None}), server) as judge:
        assert not judge.has_heads
        for result in judge.score(pairs, "scores"):
            assert result.scores is not None and result.scores.to_dict()["NS"] == 4.0
    with served_judge(merged_settings, server) as judge:
        asked = len(server.requests)
        headed = judge.score(pairs, "scores")
        assert len(server.requests) == asked  # heads alone: the server is not asked
        both = judge.score(pairs, "both")
        assert len(server.requests) == asked + len(pairs)
    for heads_only, combined, reference in zip(headed, both, in_process, strict=True):
        assert heads_only.scores == combined.scores == reference.scores  # the heads' scores, not the line's
        assert combined.assessment == ASSESSMENT


def test_fingerprint_records_the_backend_and_keeps_the_backbone(
    merged_settings: Settings, merged_tiny: tuple[Path, MergeManifest]
) -> None:
    server = ScriptedOpenAI(answer, models=(SERVED,))
    with served_judge(merged_settings, server) as judge:
        served = judge.fingerprint
        assert judge_fingerprint(judge._settings) == served  # the cache path agrees with the loaded judge
    local = configured_fingerprint(merged_settings)
    assert served.backbone == local.backbone  # heads fitted in process fit here
    assert served.key != local.key  # texts from the server never answer for in-process ones
    backend = served.to_dict()["decoding"]["backend"]
    assert backend["served_model"] == SERVED and backend["url"].startswith("http://127.0.0.1:")
    assert backend["manifest_sha256"] == merged_tiny[1].sha256
    other_url = merged_settings.model_copy(
        update={"generation_url": "http://127.0.0.1:9/v1", "generation_model": SERVED}
    )
    assert judge_fingerprint(other_url).key not in (served.key, local.key)
    assert isinstance(load_judge(other_url), ServedJudge)


def test_an_adapter_with_a_generation_server_is_refused(tiny_settings: Settings) -> None:
    settings = tiny_settings.model_copy(
        update={"generation_url": "http://127.0.0.1:9/v1", "generation_model": SERVED}
    )
    with pytest.raises(ModelLoadError, match="export merged"):
        judge_fingerprint(settings)
    with pytest.raises(ModelLoadError, match="export merged"):
        ServedJudge(settings)


def test_setting_a_url_without_a_model_name_is_refused() -> None:
    with pytest.raises(ValueError, match="generation_model"):
        Settings(generation_url="http://127.0.0.1:8000/v1")


@pytest.mark.parametrize(
    ("failure", "error", "status"),
    [
        (Failure(429), LLMRateLimited, 429),
        (Failure(503), LLMServerError, 502),
        (Failure(500), LLMServerError, 502),
    ],
)
def test_an_overloaded_or_failing_server_is_a_coded_transient_failure(
    merged_settings: Settings, failure: Failure, error: type[Exception], status: int
) -> None:
    server = ScriptedOpenAI(lambda body, n: failure, models=(SERVED,))
    with served_judge(merged_settings, server) as judge, pytest.raises(error) as raised:
        judge.score([tone_pair(1.0, 1.0)], "assessment")
    assert raised.value.http_status == status and is_transient(raised.value)  # type: ignore[attr-defined]
    assert "EVALSVC_LLM" not in str(raised.value)  # the judge LLM's settings are not the ones to fix


def test_an_unreachable_or_silent_server_is_a_coded_transient_failure(
    merged_settings: Settings, tmp_path: Path
) -> None:
    nowhere = merged_settings.model_copy(
        update={
            "generation_url": f"http://127.0.0.1:{free_port()}/v1",
            "generation_model": SERVED,
            "generation_max_retries": 0,
        }
    )
    judge = ServedJudge(nowhere)
    with pytest.raises(LLMUnreachable, match="EVALSVC_GENERATION_URL") as raised:
        judge.score([tone_pair(1.0, 1.0)], "assessment")
    assert (
        raised.value.code == "llm_unreachable"
        and raised.value.http_status == 502
        and is_transient(raised.value)
    )
    with pytest.raises(LLMUnreachable):
        judge.warmup()
    worker = nowhere.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
    with pytest.raises(LLMUnreachable):  # a bulk worker fails at start, before any job
        build_item_scorer(worker, Store.from_settings(worker), load_now=True)
    server = ScriptedOpenAI(lambda body, n: Hang(5.0), models=(SERVED,))
    with (
        served_judge(merged_settings, server, generation_timeout_s=0.5) as judge,
        pytest.raises(LLMTimeout) as hung,
    ):
        judge.score([tone_pair(1.0, 1.0)], "assessment")
    assert "EVALSVC_GENERATION_TIMEOUT_S" in str(hung.value) and is_transient(hung.value)


def test_transient_failures_are_retried_before_they_count(merged_settings: Settings) -> None:
    server = ScriptedOpenAI(lambda body, n: Failure(503) if n < 2 else Reply(ASSESSMENT), models=(SERVED,))
    with served_judge(merged_settings, server, generation_max_retries=2) as judge:
        [result] = judge.score([tone_pair(1.0, 1.0)], "assessment")
    assert result.assessment == ASSESSMENT
    assert len(server.requests) == 3


def test_a_refused_request_fails_its_pair_alone_and_is_not_cached(merged_settings: Settings) -> None:
    long_query = tone_pair(4.0, 1.0)
    server = ScriptedOpenAI(
        lambda body, n: (
            Failure(400, "audio longer than the context")
            if len(body["messages"][1]["content"][1]["input_audio"]["data"]) > 200_000
            else Reply(ASSESSMENT)
        ),
        models=(SERVED,),
    )
    with served_judge(merged_settings.model_copy(update={"heads": None}), server) as judge:
        refused, fine = judge.score([long_query, tone_pair(1.0, 1.0)], "scores")
    assert refused.error is not None and refused.error.code == "llm_request_rejected"
    assert "context" in refused.error.message and not is_cacheable(refused)
    assert fine.scores is not None and is_cacheable(fine)


def test_warmup_names_a_model_the_server_does_not_serve(merged_settings: Settings) -> None:
    server = ScriptedOpenAI(answer, models=("something-else",))
    settings = merged_settings.model_copy(update={"heads": None})
    with (
        served_judge(settings, server) as judge,
        pytest.raises(LLMModelUnavailable, match="EVALSVC_GENERATION_MODEL"),
    ):
        judge.warmup()
