"""`POST /v1/score` with an LLM judge, against a real `evalsvc serve` (auth on) whose LLM is a scripted
OpenAI-compatible server on loopback in this process and whose Whisper and emotion classifier are the
tiny ones: the `judge` field, the A/B reference, the cache (a repeat makes no LLM call), an
llm-assessment readable at /v1/results/{id}, the OpenAPI document, and the same through `EvalClient.judge`
and `evalsvc score --server URL --judge ...`."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_OK, EXIT_USER_ERROR
from evalsvc.client import AsyncEvalClient, EvalClient, ValidationError
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.judges.judges import JUDGE_IDS
from evalsvc.protocol import JudgeName, JudgeResponse, StoredResult
from tests.api.harness import AUTH_SERVER_FLAGS, RunningServer, start_server, stop_server, wav_bytes
from tests.judges.openai_server import ScriptedOpenAI, serving

LLM_ENV = {
    "EVALSVC_ASR_MODEL": "tiny",
    "EVALSVC_ASR_MAX_NEW_TOKENS": "8",
    "EVALSVC_EMOTION_MODEL": "tiny",
    "EVALSVC_EMOTION_BACKEND": "transformers",
    "EVALSVC_LLM_MODEL": "judge-model",
    "EVALSVC_LLM_MAX_RETRIES": "0",
}


@pytest.fixture(scope="module")
def llm() -> Iterator[tuple[ScriptedOpenAI, str]]:
    scripted = ScriptedOpenAI()
    with serving(scripted) as base_url:
        yield scripted, base_url


@pytest.fixture(scope="module")
def server(
    llm: tuple[ScriptedOpenAI, str], tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths
) -> Iterator[RunningServer]:
    env = LLM_ENV | {"EVALSVC_LLM_BASE_URL": llm[1]}
    running = start_server(tmp_path_factory.mktemp("llm-server"), tiny_paths, AUTH_SERVER_FLAGS, env=env)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    key = server.api_key("llm-team")
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=120) as client:
        yield client


def clips(frequency: float) -> dict[str, tuple[str, bytes, str]]:
    return {
        "query": ("q.wav", wav_bytes(1.0, frequency), "audio/wav"),
        "response": ("r.wav", wav_bytes(1.1, frequency * 1.5), "audio/wav"),
    }


def test_the_judge_field_asks_the_llm_and_a_repeat_is_answered_from_the_store(
    http: httpx.Client, llm: tuple[ScriptedOpenAI, str]
) -> None:
    scripted, _ = llm
    before = len(scripted.requests)
    first = http.post(
        "/v1/score", files=clips(300.0), data={"judge": "llm-mos+emotion", "metadata": '{"a": 1}'}
    )
    assert first.status_code == 200, first.text
    answer = JudgeResponse.model_validate(first.json())
    assert answer.judge == "llm-mos+emotion" and not answer.cached and answer.error is None
    assert answer.result == {"score": 2} and answer.metadata == {"a": 1}
    assert answer.texts["query"].emotion is not None and answer.model["judge"] == "llm-mos+emotion"
    assert len(scripted.requests) == before + 1
    again = http.post("/v1/score", files=clips(300.0), data={"judge": "llm-mos+emotion"})
    assert again.status_code == 200 and again.json()["cached"] is True
    assert len(scripted.requests) == before + 1


def test_ab_takes_its_reference_as_a_file_or_as_text_and_refuses_none(
    http: httpx.Client, llm: tuple[ScriptedOpenAI, str]
) -> None:
    scripted, _ = llm
    before = len(scripted.requests)
    missing = http.post("/v1/score", files=clips(310.0), data={"judge": "llm-ab"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_parameter"
    assert len(scripted.requests) == before
    with_file = clips(310.0) | {"reference": ("ref.wav", wav_bytes(1.2, 700.0), "audio/wav")}
    answer = http.post("/v1/score", files=with_file, data={"judge": "llm-ab"})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["result"]) == {"verdict", "forward", "backward", "flipped"}
    body: dict[str, Any] = {
        "query": {"audio_b64": _b64(wav_bytes(1.0, 320.0))},
        "response": {"audio_b64": _b64(wav_bytes(1.1, 480.0))},
        "judge": "llm-ab",
        "reference_transcript": "That sounds really hard; I am here for you.",
    }
    as_text = http.post("/v1/score", json=body)
    assert as_text.status_code == 200 and as_text.json()["texts"]["reference"]["transcript"].startswith(
        "That"
    )
    assert len(scripted.requests) == before + 4  # two orders per pair


def test_an_assessment_is_a_stored_result_of_the_tenant(http: httpx.Client) -> None:
    answer = http.post("/v1/score", files=clips(330.0), data={"judge": "llm-assessment"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"]["text"].splitlines()[-1].startswith("SCORES: NS=")
    stored = StoredResult.model_validate(http.get(f"/v1/results/{body['id']}").json())
    assert stored.model.profile == "llm-assessment" and stored.assessment == body["result"]["text"]


def test_an_unknown_judge_is_a_validation_error(http: httpx.Client) -> None:
    answer = http.post("/v1/score", files=clips(340.0), data={"judge": "gpt-judge"})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_failed"


def test_openapi_documents_the_judge_field_and_the_judge_answer(server: RunningServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert document["components"]["schemas"]["ScoreRequest"]["properties"]["judge"]["enum"] == [
        "empathyeval",
        *JUDGE_IDS,
    ]
    form = document["paths"]["/v1/score"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"judge", "reference", "reference_transcript"} <= set(form["properties"])
    assert "JudgeResponse" in document["components"]["schemas"]
    assert list(JudgeName.__args__) == ["empathyeval", *JUDGE_IDS]  # type: ignore[attr-defined]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_client_judges_and_sends_the_ab_reference_as_a_file_or_as_text(
    server: RunningServer, llm: tuple[ScriptedOpenAI, str]
) -> None:
    scripted, _ = llm
    before = len(scripted.requests)
    query, response, reference = wav_bytes(1.0, 350.0), wav_bytes(1.1, 525.0), wav_bytes(1.2, 720.0)
    with EvalClient(server.url, server.api_key("client-team")) as client:
        mos = client.judge(query, response, "llm-mos", metadata={"item": "m1"})
        assert isinstance(mos, JudgeResponse) and mos.judge == "llm-mos" and mos.error is None
        assert mos.result == {"score": 2} and mos.metadata == {"item": "m1"}
        with_file = client.judge(query, response, "llm-ab", reference=reference)
        assert with_file.texts["reference"].transcript is not None
        assert set(with_file.result or {}) == {"verdict", "forward", "backward", "flipped"}
        as_text = client.judge(query, response, "llm-ab", reference_transcript="I hear you; that is hard.")
        assert as_text.texts["reference"].transcript == "I hear you; that is hard."
        assert len(scripted.requests) == before + 5  # one MOS call, two orders per A/B pair
        with pytest.raises(ValidationError) as refused:
            client.judge(query, response, "llm-ab", reference=reference, reference_transcript="both")
        assert refused.value.code == "validation_failed"

    async def judge_async() -> JudgeResponse:
        async with AsyncEvalClient(server.url, server.api_key("client-team")) as client:
            return await client.judge(query, response, "llm-mos")

    repeat = asyncio.run(judge_async())
    assert repeat.cached and repeat.result == {"score": 2}  # the same pair: from the store
    assert len(scripted.requests) == before + 5


def test_cli_score_with_server_and_judge_prints_the_judge_answer(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = server.api_key("cli-judge")
    files = {name: tmp_path / f"{name}.wav" for name in ("q", "r")}
    files["q"].write_bytes(wav_bytes(1.0, 360.0))
    files["r"].write_bytes(wav_bytes(1.1, 540.0))
    common = ["score", str(files["q"]), str(files["r"]), "--server", server.url, "--api-key", key]
    assert main([*common, "--judge", "llm-ab", "--reference-transcript", "Take a breath."]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert payload["judge"] == "llm-ab" and set(payload["result"]) == {
        "verdict",
        "forward",
        "backward",
        "flipped",
    }
    assert payload["texts"]["reference"]["transcript"] == "Take a breath."
    assert (
        main([*common, "--judge", "llm-ab"]) == EXIT_USER_ERROR
    )  # A/B without a reference: the server's 400
    assert "invalid_parameter" in capsys.readouterr().err
