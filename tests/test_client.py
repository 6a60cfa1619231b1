"""`evalsvc.client`: retries and typed errors (httpx MockTransport), then real scoring over HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from evalsvc.cli import main
from evalsvc.cli.common import EXIT_CONFIG_ERROR, EXIT_OK
from evalsvc.client import (
    AsyncEvalClient,
    AuthenticationError,
    BadRequestError,
    EvalClient,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    TransportError,
)
from evalsvc.engine.tiny import TinyModelPaths
from tests.api.harness import AUTH_SERVER_FLAGS, RunningServer, free_port, shared_server, wav_bytes
from tests.helpers import EXAMPLES

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.001, max_backoff_s=0.01)


def error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": "m"}}, headers=headers)


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that answers with `answers` in order and records what it was sent."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers[len(sent) - 1]

    return httpx.MockTransport(handler), sent


STORED = {
    "id": 3,
    "mode": "scores",
    "scores": {"NS": 1.0, "WA": 2.0, "EU": 3.0, "ES": 4.0, "avg": 2.5},
    "assessment": None,
    "model": {
        "fingerprint": "f", "backbone": "b", "model_id": "m", "model_revision": None, "weights_sha256": None,
        "adapter_sha256": None, "heads_sha256": None, "prompt_version": "p", "decoding": {}, "packages": {},
    },
    "audio": {"query": {"sha256": "q", "duration_s": 1.0}, "response": {"sha256": "r", "duration_s": 1.0}},
}  # fmt: skip


def test_429_and_503_are_retried_until_success() -> None:
    transport, sent = scripted(
        error(429, "overloaded"), error(503, "not_ready"), httpx.Response(200, json=STORED)
    )
    with EvalClient("http://evalsvc", "evs_key", retry=FAST_RETRY, transport=transport) as client:
        assert client.result(3).scores is not None
    assert len(sent) == 3
    assert sent[0].headers["authorization"] == "Bearer evs_key"


def test_retries_run_out_with_the_typed_error() -> None:
    transport, sent = scripted(*[error(503, "database_unavailable")] * 3)
    client = EvalClient("http://evalsvc", retry=FAST_RETRY, transport=transport)
    with client, pytest.raises(ServiceUnavailableError) as raised:
        client.result(1)
    assert raised.value.code == "database_unavailable" and raised.value.status_code == 503
    assert len(sent) == 3

    transport, _ = scripted(*[error(429, "overloaded")] * 3)
    client = EvalClient("http://evalsvc", retry=FAST_RETRY, transport=transport)
    with client, pytest.raises(RateLimitedError):
        client.result(1)


@pytest.mark.parametrize(
    ("answer", "expected", "code"),
    [
        (error(400, "audio_unreadable"), BadRequestError, "audio_unreadable"),
        (error(401, "unauthorized"), AuthenticationError, "unauthorized"),
        (httpx.Response(502, text="<html>bad gateway</html>"), ServerError, "http_error"),
    ],
)
def test_other_errors_are_raised_at_once(
    answer: httpx.Response, expected: type[Exception], code: str
) -> None:
    transport, sent = scripted(answer, answer)
    client = EvalClient("http://evalsvc", retry=FAST_RETRY, transport=transport)
    with client, pytest.raises(expected) as raised:
        client.result(1)
    assert raised.value.code == code  # type: ignore[attr-defined]
    assert len(sent) == 1


def test_refused_connections_are_retried_then_a_transport_error() -> None:
    attempts = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("refused", request=request)

    with EvalClient("http://evalsvc", retry=FAST_RETRY, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(TransportError):
            client.result(1)
        assert client.ready() is False
    assert len(attempts) == 3 + 1


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_s=0.001, max_backoff_s=5.0)
    assert policy.delay(0, "2") == 2.0
    assert policy.delay(0, "600") == 5.0
    assert 0 <= policy.delay(3, None) <= 0.008
    assert 0 <= policy.delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") <= 0.002


def test_async_client_retries_too() -> None:
    transport, sent = scripted(error(429, "overloaded"), httpx.Response(200, json=STORED))

    async def fetch() -> float:
        async with AsyncEvalClient("http://evalsvc", retry=FAST_RETRY, transport=transport) as client:
            stored = await client.result(3)
        assert stored.scores is not None
        return stored.scores.avg

    assert asyncio.run(fetch()) == 2.5
    assert len(sent) == 2


def test_arrays_need_a_sample_rate() -> None:
    with EvalClient("http://evalsvc") as client, pytest.raises(ValueError, match="sample_rate"):
        client.score(np.zeros(16_000, dtype=np.float32), np.zeros(16_000, dtype=np.float32))


# --- against the real server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths
) -> RunningServer:
    return shared_server(request.config, tmp_path_factory, tiny_paths, "auth", AUTH_SERVER_FLAGS)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> EvalClient:
    with EvalClient(server.url, server.api_key("client-tests")) as client:
        yield client


def test_paths_bytes_and_arrays_score_the_same_pair_alike(client: EvalClient, tmp_path: Path) -> None:
    query, response = tmp_path / "q.wav", tmp_path / "r.wav"
    query.write_bytes(wav_bytes(1.2, 800.0))
    response.write_bytes(wav_bytes(1.3, 1200.0))
    from_paths = client.score(query, str(response), metadata={"via": "paths"})
    assert from_paths.cached is False and from_paths.metadata == {"via": "paths"}

    from_bytes = client.score(query.read_bytes(), response.read_bytes())
    assert from_bytes.cached is True and from_bytes.id == from_paths.id

    t = np.arange(int(16_000 * 1.2)) / 16_000
    samples = (0.2 * np.sin(2 * np.pi * 800.0 * t)).astype(np.float32)
    other = (0.2 * np.sin(2 * np.pi * 1200.0 * np.arange(int(16_000 * 1.3)) / 16_000)).astype(np.float32)
    from_arrays = client.score(samples, other, sample_rate=16_000)
    assert from_arrays.scores is not None and from_paths.scores is not None
    assert from_arrays.scores.avg == pytest.approx(from_paths.scores.avg, abs=1e-3)  # PCM16 vs float
    assert client.result(from_paths.id or 0).scores == from_paths.scores


def test_bad_audio_raises_with_its_code(client: EvalClient) -> None:
    with pytest.raises(BadRequestError) as raised:
        client.score(b"not audio at all", EXAMPLES / "response.wav")
    assert raised.value.code == "audio_unreadable"


def test_wrong_key_raises_authentication_error(server: RunningServer) -> None:
    with EvalClient(server.url, "evs_wrong") as client, pytest.raises(AuthenticationError):
        client.score(EXAMPLES / "query.wav", EXAMPLES / "response.wav")


def test_async_client_scores_concurrently(server: RunningServer) -> None:
    key = server.api_key("client-tests")

    async def score_all() -> list[float]:
        async with AsyncEvalClient(server.url, key) as client:
            results = await asyncio.gather(
                *(
                    client.score(wav_bytes(0.7, 900.0 + 31 * i), wav_bytes(0.8, 1300.0 + 37 * i))
                    for i in range(6)
                )
            )
        return [result.scores.avg for result in results if result.scores is not None]

    assert len(asyncio.run(score_all())) == 6


def test_result_payload_round_trips_as_json(client: EvalClient) -> None:
    result = client.score(EXAMPLES / "query.wav", EXAMPLES / "response.wav")
    assert json.loads(result.model_dump_json())["audio"]["query"]["duration_s"] > 0.5


def test_cli_score_with_server_prints_the_servers_json(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    key = server.api_key("cli")
    query, response = str(EXAMPLES / "query.wav"), str(EXAMPLES / "response.wav")
    assert main(["score", query, response, "--server", server.url, "--api-key", key]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) >= {"id", "cached", "scores", "model", "audio", "timings_ms"}
    assert "error" not in payload

    assert (
        main(
            ["score", str(EXAMPLES / "make_examples.py"), response, "--server", server.url, "--api-key", key]
        )
        == 2
    )
    assert "audio_unreadable" in capsys.readouterr().err
    assert main(["score", query, response, "--server", server.url, "--api-key", "evs_nope"]) == 2
    assert "unauthorized" in capsys.readouterr().err


def test_cli_score_with_an_unreachable_server_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    query, response = str(EXAMPLES / "query.wav"), str(EXAMPLES / "response.wav")
    assert main(["score", query, response, "--server", url]) == EXIT_CONFIG_ERROR
    assert "server_unreachable" in capsys.readouterr().err
