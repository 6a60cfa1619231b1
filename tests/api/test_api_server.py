"""`POST /v1/score` and friends against a real `evalsvc serve` process with auth and batching on.

The server runs the tiny model with two API-server processes (so metrics must add up across them),
dynamic batches of up to 8 and a 4 MiB payload limit. Pairs are synthetic tones with distinct
frequencies, so a test that wants the model to run never gets a cache hit by accident.
"""

from __future__ import annotations

import base64
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.cli import main
from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.engine.types import AudioPair
from evalsvc.protocol import ScoreResponse
from tests.api.harness import AUTH_SERVER_FLAGS, RunningServer, shared_server, wav_bytes

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths
) -> RunningServer:
    return shared_server(request.config, tmp_path_factory, tiny_paths, "auth", AUTH_SERVER_FLAGS)


@pytest.fixture(scope="module")
def key_a(server: RunningServer) -> str:
    return server.api_key("team-a")


@pytest.fixture(scope="module")
def key_b(server: RunningServer) -> str:
    return server.api_key("team-b")


@pytest.fixture(scope="module")
def http(server: RunningServer, key_a: str) -> httpx.Client:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key_a}, timeout=60) as client:
        yield client


def files(query: bytes, response: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"query": ("q.wav", query, "audio/wav"), "response": ("r.wav", response, "audio/wav")}


def expected_scores(engine: Engine, query: bytes, response: bytes) -> np.ndarray:
    """What the in-process engine gives the same pair alone: the reference for every HTTP answer."""
    limits = AudioLimits()
    pair = AudioPair(decode_audio(query, limits), decode_audio(response, limits))
    [result] = engine.score([pair], "scores")
    assert result.scores is not None
    return np.array([result.scores.NS, result.scores.WA, result.scores.EU, result.scores.ES])


def score_values(payload: dict[str, Any]) -> np.ndarray:
    return np.array([payload["scores"][name] for name in ("NS", "WA", "EU", "ES")])


def assert_error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


# --- probes and auth ------------------------------------------------------------------------------


def test_probes_need_no_key(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "alive"}
    assert httpx.get(f"{server.url}/ready").json() == {"ready": True, "model": True, "database": True}
    assert httpx.get(f"{server.url}/metrics").status_code == 200
    assert httpx.get(f"{server.url}/openapi.json").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "evs_not-a-key"},
        {"Authorization": "Bearer evs_not-a-key"},
        {"Authorization": "Basic eA=="},
    ],
    ids=["none", "unknown-x-api-key", "unknown-bearer", "basic"],
)
def test_scoring_needs_a_valid_key(server: RunningServer, headers: dict[str, str]) -> None:
    answer = httpx.post(f"{server.url}/v1/score", headers=headers, files=files(b"x", b"y"))
    assert_error(answer, 401, "unauthorized")
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_bearer_and_x_api_key_are_both_accepted(server: RunningServer, key_a: str) -> None:
    query, response = wav_bytes(1.0, 210.0), wav_bytes(1.2, 315.0)
    for headers in ({"Authorization": f"Bearer {key_a}"}, {"X-API-Key": key_a}):
        answer = httpx.post(
            f"{server.url}/v1/score", headers=headers, files=files(query, response), timeout=60
        )
        assert answer.status_code == 200, answer.text


def test_keys_create_prints_a_working_key(server: RunningServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tenant", "team-c", "--data-dir", str(server.data_dir)]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["tenant"] == "team-c" and created["key"].startswith(created["prefix"])
    answer = httpx.get(f"{server.url}/v1/results/1", headers={"X-API-Key": created["key"]})
    assert answer.status_code in (200, 404), answer.text  # authenticated: not 401

    assert main(["keys", "revoke", str(created["key_id"]), "--data-dir", str(server.data_dir)]) == 0
    answer = httpx.get(f"{server.url}/v1/results/1", headers={"X-API-Key": created["key"]})
    assert_error(answer, 401, "unauthorized")


# --- scoring ----------------------------------------------------------------------------------------


def test_multipart_scores_like_the_engine_and_repeats_are_cached(http: httpx.Client, engine: Engine) -> None:
    query, response = wav_bytes(1.5, 220.0), wav_bytes(2.0, 330.0)
    first = http.post("/v1/score", files=files(query, response), data={"metadata": '{"run": "t1"}'})
    assert first.status_code == 200, first.text
    payload = first.json()
    ScoreResponse.model_validate(payload)
    assert payload["cached"] is False and isinstance(payload["id"], int)
    assert payload["metadata"] == {"run": "t1"}
    assert np.allclose(score_values(payload), expected_scores(engine, query, response), atol=TOLERANCE)
    assert {"decode_ms", "features_ms", "model_ms", "total_ms"} <= set(payload["timings_ms"])

    again = http.post("/v1/score", files=files(query, response)).json()
    assert again["cached"] is True and again["id"] == payload["id"]
    assert again["scores"] == payload["scores"]


def test_json_base64_gives_the_same_answer_as_multipart(http: httpx.Client) -> None:
    query, response = wav_bytes(1.1, 240.0), wav_bytes(0.9, 360.0)
    multipart = http.post("/v1/score", files=files(query, response)).json()
    body = {
        "query": {"audio_b64": base64.b64encode(query).decode()},
        "response": {"audio_b64": base64.b64encode(response).decode()},
        "mode": "scores",
        "metadata": {"item": 7},
    }
    answer = http.post("/v1/score", json=body)
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert payload["id"] == multipart["id"] and payload["cached"] is True
    assert payload["scores"] == multipart["scores"] and payload["metadata"] == {"item": 7}


def test_both_mode_adds_the_assessment(http: httpx.Client) -> None:
    answer = http.post(
        "/v1/score", files=files(wav_bytes(1.0, 250.0), wav_bytes(1.0, 375.0)), data={"mode": "both"}
    )
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert isinstance(payload["assessment"], str) and payload["scores"] is not None
    assert payload["model"]["decoding"] == {"max_new_tokens": 8, "greedy": True}


def test_server_side_paths_only_inside_the_data_roots(
    server: RunningServer, http: httpx.Client, tmp_path: Path
) -> None:
    (server.data_root / "sub").mkdir(exist_ok=True)
    (server.data_root / "sub" / "q.wav").write_bytes(wav_bytes(1.0, 260.0))
    (server.data_root / "r.wav").write_bytes(wav_bytes(1.0, 390.0))
    outside = tmp_path / "secret.wav"
    outside.write_bytes(wav_bytes(1.0, 270.0))
    escape = server.data_root / "escape.wav"
    escape.unlink(missing_ok=True)
    escape.symlink_to(outside)

    def score(query_path: str) -> httpx.Response:
        return http.post("/v1/score", json={"query": {"path": query_path}, "response": {"path": "r.wav"}})

    assert score("sub/q.wav").status_code == 200
    assert score(str(server.data_root / "sub" / "q.wav")).status_code == 200
    for refused in (str(outside), "../" * 8 + str(outside).lstrip("/"), "sub/../../secret.wav", "escape.wav"):
        assert_error(score(refused), 400, "path_not_allowed")
    missing = score("sub/missing.wav")
    assert_error(missing, 400, "audio_unreadable")
    (server.data_root / "sub" / "notes.mp3").write_text("not audio")
    for answer in (missing, score(str(server.data_root / "sub" / "notes.mp3"))):
        message = answer.json()["error"]["message"]  # names the file as the client does, not the root
        assert str(server.data_root) not in message and "'sub/" in message, message


# --- every error code -----------------------------------------------------------------------------


GOOD = wav_bytes(1.0, 280.0)
JSON = {"content-type": "application/json"}
ERROR_CASES: dict[str, tuple[str, str, dict[str, Any], int, str]] = {
    "corrupt audio": ("POST", "/v1/score", {"files": files(b"RIFF....WAVEjunk", GOOD)}, 400, "audio_unreadable"),
    "too short": ("POST", "/v1/score", {"files": files(wav_bytes(0.05, 280.0), GOOD)}, 400, "audio_too_short"),
    "too long": ("POST", "/v1/score", {"files": files(wav_bytes(31.0, 280.0), GOOD)}, 400, "audio_too_long"),
    "bad base64": (
        "POST", "/v1/score", {"json": {"query": {"audio_b64": "%%%"}, "response": {"audio_b64": "AAAA"}}},
        400, "invalid_parameter",
    ),
    "bad json": ("POST", "/v1/score", {"content": b"{not json", "headers": JSON}, 400, "invalid_parameter"),
    "over the payload limit": (
        "POST", "/v1/score", {"files": files(b"\0" * (5 * 1024 * 1024), GOOD)}, 413, "payload_too_large",
    ),
    "over the limit, chunked": (
        "POST", "/v1/score", {"content": [b"x" * 2**20] * 5, "headers": JSON},
        413, "payload_too_large",
    ),
    "text body": (
        "POST", "/v1/score", {"content": b"hi", "headers": {"content-type": "text/plain"}},
        415, "unsupported_media_type",
    ),
    "url-encoded form": ("POST", "/v1/score", {"data": {"query": "x"}}, 415, "unsupported_media_type"),
    "missing file": ("POST", "/v1/score", {"files": {"query": ("q.wav", GOOD, "audio/wav")}}, 422, "validation_failed"),
    "unknown mode": ("POST", "/v1/score", {"files": files(GOOD, GOOD), "data": {"mode": "loud"}}, 422, "validation_failed"),
    "metadata not an object": (
        "POST", "/v1/score", {"files": files(GOOD, GOOD), "data": {"metadata": "[1]"}}, 422, "validation_failed",
    ),
    "wrong json types": (
        "POST", "/v1/score", {"json": {"query": {"audio_b64": 5}, "response": {}}}, 422, "validation_failed",
    ),
    "no such result": ("GET", "/v1/results/999999999", {}, 404, "not_found"),
    "result id not a number": ("GET", "/v1/results/abc", {}, 422, "validation_failed"),
    "wrong method": ("GET", "/v1/score", {}, 405, "method_not_allowed"),
}  # fmt: skip


@pytest.mark.parametrize("case", ERROR_CASES)
def test_error_codes(http: httpx.Client, case: str) -> None:
    method, path, request, status, code = ERROR_CASES[case]
    assert_error(http.request(method, path, **request), status, code)


def test_tenant_a_cannot_see_tenant_b_results(server: RunningServer, key_a: str, key_b: str) -> None:
    query, response = wav_bytes(1.3, 290.0), wav_bytes(1.4, 435.0)
    as_a = {"X-API-Key": key_a}
    as_b = {"Authorization": f"Bearer {key_b}"}
    scored = httpx.post(
        f"{server.url}/v1/score", headers=as_a, files=files(query, response), timeout=60
    ).json()
    assert (
        httpx.get(f"{server.url}/v1/results/{scored['id']}", headers=as_a).json()["scores"]
        == scored["scores"]
    )
    assert_error(httpx.get(f"{server.url}/v1/results/{scored['id']}", headers=as_b), 404, "not_found")


def test_nothing_in_an_answer_tells_a_tenant_what_other_tenants_submitted(server: RunningServer) -> None:
    """A pair another tenant scored first is answered from the store (the computation is shared),
    but as a first answer: `cached` false and the tenant's own next number, never the other's id."""
    first, second = server.api_key("cache-signal-1"), server.api_key("cache-signal-2")
    query, response = wav_bytes(1.2, 297.0), wav_bytes(1.1, 443.0)

    def score(key: str, q: bytes = query) -> dict[str, Any]:
        answer = httpx.post(
            f"{server.url}/v1/score", headers={"X-API-Key": key}, files=files(q, response), timeout=60
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    for repeat in range(3):  # tenant 1 builds up numbers 1..3
        score(first, wav_bytes(1.2, 301.0 + repeat))
    by_first = score(first)
    assert by_first["cached"] is False and by_first["id"] == 4
    hits_before = metric(server, "evalsvc_cache_hits_total")

    by_second = score(second)
    assert metric(server, "evalsvc_cache_hits_total") == hits_before + 1  # shared: not scored again
    assert by_second["cached"] is False and by_second["id"] == 1
    assert by_second["scores"] == by_first["scores"]
    again = score(second)
    assert again["cached"] is True and again["id"] == 1  # its own repeat is a cache hit to it
    stored = httpx.get(f"{server.url}/v1/results/1", headers={"X-API-Key": second}).json()
    assert stored["id"] == 1 and stored["scores"] == by_first["scores"]


# --- batching -------------------------------------------------------------------------------------


def concurrent_posts(server: RunningServer, key: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    with (
        httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=120) as client,
        ThreadPoolExecutor(max_workers=len(bodies)) as pool,
    ):
        return list(pool.map(lambda body: client.post("/v1/score", **body), bodies))


def metric(server: RunningServer, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_32_concurrent_requests_are_batched_and_each_answered_with_its_own_scores(
    server: RunningServer, key_a: str, engine: Engine
) -> None:
    pairs = [
        (wav_bytes(0.5 + 0.1 * (i % 7), 300.0 + 7 * i), wav_bytes(0.6 + 0.1 * (i % 5), 500.0 + 11 * i))
        for i in range(32)
    ]
    batches_before = metric(server, "evalsvc_batch_size_count")
    requests_before = metric(server, "evalsvc_batch_size_sum")
    answers = concurrent_posts(server, key_a, [{"files": files(q, r)} for q, r in pairs])

    assert [answer.status_code for answer in answers] == [200] * 32, [
        a.text for a in answers if a.status_code != 200
    ]
    for (query, response), answer in zip(pairs, answers, strict=True):
        payload = answer.json()
        assert payload["cached"] is False
        # Batch invariance through HTTP: the same scores as the pair alone in process.
        assert np.allclose(score_values(payload), expected_scores(engine, query, response), atol=TOLERANCE)
    batches = metric(server, "evalsvc_batch_size_count") - batches_before
    assert metric(server, "evalsvc_batch_size_sum") - requests_before == 32
    assert batches < 32, "no two requests were ever batched together"


def test_one_corrupt_file_fails_only_its_own_request(server: RunningServer, key_a: str) -> None:
    bodies = [
        {"files": files(wav_bytes(0.8, 600.0 + 13 * i), wav_bytes(0.7, 900.0 + 17 * i))} for i in range(8)
    ]
    good_query = bodies[3]["files"]["query"][1]
    bodies[3] = {"files": files(good_query[: len(good_query) // 2], good_query)}  # truncated WAV
    answers = concurrent_posts(server, key_a, bodies)
    assert_error(answers[3], 400, "audio_unreadable")
    assert [a.status_code for i, a in enumerate(answers) if i != 3] == [200] * 7


# --- metrics and OpenAPI ----------------------------------------------------------------------------


def test_metrics_add_up_across_api_server_processes(server: RunningServer) -> None:
    name = 'evalsvc_http_requests_total{endpoint="/health",status="200"}'
    before = metric(server, name)
    for _ in range(20):  # a new connection each: the kernel spreads them over both API servers
        assert httpx.get(f"{server.url}/health").status_code == 200
    assert metric(server, name) - before == 20
    text = httpx.get(f"{server.url}/metrics").text
    for family in (
        "evalsvc_http_request_duration_seconds_bucket",
        "evalsvc_model_seconds_count",
        "evalsvc_cache_hits_total",
        "evalsvc_cache_misses_total",
        "evalsvc_in_flight",
    ):
        assert family in text


def test_openapi_documents_score(server: RunningServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    score = document["paths"]["/v1/score"]["post"]
    content = score["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ScoreRequest"}
    assert {"query", "response"} <= set(content["multipart/form-data"]["schema"]["required"])
    assert {"ScoreRequest", "AudioSource", "ScoreResponse", "ErrorResponse"} <= set(
        document["components"]["schemas"]
    )
    assert {"200", "400", "401", "413", "415", "422", "429", "503", "504"} <= set(score["responses"])
    assert "/v1/results/{result_id}" in document["paths"]
