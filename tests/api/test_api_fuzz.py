"""Malformed requests against the real server, on SQLite and on PostgreSQL: no 5xx, and it stays healthy.

240 `/v1/score` requests are drawn from a seeded generator (reproducible) across the ways a body goes
wrong: random bytes behind real format magic, truncated WAVs, wrong JSON types, huge fields, bad
base64, broken multipart, wrong content types. Then the reads and bulk runs get what PostgreSQL
refuses and SQLite accepts: NUL characters in query parameters, form fields and manifest fields, and
integers beyond 64 bits. Each must get a 4xx with the JSON error shape, on both backends.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from evalsvc.engine.tiny import TinyModelPaths
from tests.api.harness import (
    AUTH_SERVER_FLAGS,
    RunningServer,
    shared_server,
    wav_bytes,
)

PER_KIND = 24
MAGIC = (b"RIFF\x24\x08\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"ID3\x03\x00", b"\xff\xfb\x90", b"")
Request = tuple[str, dict[str, Any]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths
) -> RunningServer:
    """The session's main server (SQLite), or its twin on PostgreSQL (also schemathesis's)."""
    if request.param == "sqlite":
        return shared_server(request.config, tmp_path_factory, tiny_paths, "auth", AUTH_SERVER_FLAGS)
    return shared_server(
        request.config, tmp_path_factory, tiny_paths, "auth-pg", AUTH_SERVER_FLAGS, postgres=True
    )


def multipart(query: bytes, response: bytes, **fields: str) -> dict[str, Any]:
    return {
        "files": {"query": ("q", query, "audio/wav"), "response": ("r", response, "audio/wav")},
        "data": fields,
    }


def raw(body: bytes, content_type: str) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": content_type}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def random_bytes(rng: random.Random) -> bytes:
    return rng.choice(MAGIC) + rng.randbytes(rng.randint(0, 4096))


def truncated_wav(rng: random.Random) -> bytes:
    clip = wav_bytes(rng.uniform(0.5, 2.0), rng.uniform(100, 2000))
    return clip[: rng.randint(0, len(clip) - 2)]


def wrong_json_value(rng: random.Random) -> object:
    return rng.choice([None, 5, -1.5, True, "text", [], [1, 2], {"audio_b64": 7}, {"path": None}, {"x": "y"}])


def huge_field(rng: random.Random, good: bytes) -> dict[str, Any]:
    clip = {"audio_b64": b64(good)}
    choices: list[Callable[[], dict[str, Any]]] = [
        lambda: {
            "json": {
                "query": clip,
                "response": clip,
                "metadata": {"blob": "x" * rng.randint(70_000, 2_000_000)},
            }
        },
        lambda: {"json": {"query": {"path": "a/" * rng.randint(2_000, 200_000)}, "response": clip}},
        lambda: multipart(good, truncated_wav(rng), mode="m" * rng.randint(1_100_000, 2_000_000)),
        lambda: multipart(good, good, metadata=json.dumps({"k": "v" * rng.randint(70_000, 500_000)})),
        lambda: {
            "json": {"query": {"audio_b64": "A" * rng.randint(27_000_000, 28_000_000)}, "response": clip}
        },
    ]
    return rng.choice(choices)()


def kinds(rng: random.Random, good: bytes) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each kind makes one malformed request; the two clips differ so nothing is ever a valid pair."""
    return {
        "random bytes": lambda: multipart(random_bytes(rng), rng.choice([good, random_bytes(rng)])),
        "truncated wav": lambda: multipart(truncated_wav(rng), good),
        "wrong json types": lambda: {
            "json": {
                "query": wrong_json_value(rng),
                "response": rng.choice([{"audio_b64": b64(good)}, wrong_json_value(rng)]),
                "mode": rng.choice(["scores", 3, "loud", None, ["both"]]),
                "metadata": rng.choice([{}, "meta", [1], 4, {"k": "v"}]),
            }
        },
        "json not an object": lambda: {"json": rng.choice([[], 3, "score me", None, [{"query": {}}]])},
        "huge fields": lambda: huge_field(rng, good),
        "bad base64": lambda: {
            "json": {
                "query": {"audio_b64": rng.choice(["!!!!", "QUJD=", "====", "é" * 8, b64(good)[:-3], " "])},
                "response": {"audio_b64": b64(random_bytes(rng))},
            }
        },
        "broken multipart": lambda: raw(
            rng.choice(
                [b'--xyz\r\nContent-Disposition: form-data; name="query"\r\n\r\n', rng.randbytes(300)]
            ),
            rng.choice(
                ["multipart/form-data; boundary=xyz", "multipart/form-data", "multipart/form-data; boundary="]
            ),
        ),
        "broken json": lambda: raw(
            rng.choice([b"", b"{", b"[" * 100_000, rng.randbytes(200), b'{"query": }', b"\xff\xfe{}"]),
            "application/json",
        ),
        "wrong content type": lambda: raw(
            rng.randbytes(64), rng.choice(["text/plain", "application/xml", "audio/wav", "", "image/png"])
        ),
        "multipart wrong parts": lambda: rng.choice(
            [
                {"files": {"query": ("q", good, "audio/wav")}},
                {"files": {"query": ("q", good, "audio/wav"), "other": ("o", good, "audio/wav")}},
                {"files": {"query": ("q", good, "audio/wav")}, "data": {"response": "not a file"}},
                multipart(good, truncated_wav(rng), unknown="field"),
            ]
        ),
    }


def malformed_requests(count_per_kind: int = PER_KIND, seed: int = 2601) -> Iterator[Request]:
    rng = random.Random(seed)
    good = wav_bytes(1.0, 440.0)
    for name, make in kinds(rng, good).items():
        for index in range(count_per_kind):
            yield f"{name} #{index}", make()


def test_malformed_requests_never_get_a_5xx(server: RunningServer) -> None:
    key = server.api_key("fuzz")
    requests = list(malformed_requests())
    assert len(requests) >= 200

    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as client:

        def send(request: Request) -> tuple[str, int, str]:
            answer = client.post("/v1/score", **request[1])
            return request[0], answer.status_code, answer.text

        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(send, requests))

    failures = [
        (name, status, text[:200]) for name, status, text in outcomes if status not in (400, 413, 415, 422)
    ]
    assert not failures, failures
    for _name, _status, text in outcomes:
        assert set(json.loads(text)["error"]) == {"code", "message"}

    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/ready").status_code == 200
    answer = httpx.post(
        f"{server.url}/v1/score",
        headers={"X-API-Key": key},
        files={
            "query": ("q", wav_bytes(1.0, 445.0), "audio/wav"),
            "response": ("r", wav_bytes(1.0, 665.0), "audio/wav"),
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


NUL = "\x00"
LONG = str(2**63)  # one more than a 64-bit column holds
READS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/reports/leaderboard", {"dataset": NUL}),
    ("/v1/reports/leaderboard", {"run": LONG}),
    ("/v1/reports/leaderboard", {"sort": f"avg{NUL}"}),
    ("/v1/reports/runs/1/agreement", {"labels": f"a{NUL}b"}),
    ("/v1/reports/compare", {"run": ["1"], "system": [NUL, "b"]}),
    ("/v1/reports/compare", {"run": ["1", "2"], "dataset": f"d{NUL}"}),
    ("/v1/reports/runs/1/html", {"labels": NUL}),
    ("/v1/reports/runs/1/export", {"system": f"a{NUL}"}),
    ("/v1/reports/runs/1/export", {"format": "csv", "dataset": NUL}),
    (f"/v1/reports/runs/{LONG}/summary", {}),
    ("/v1/runs/1/results", {"after": LONG}),
    ("/v1/runs/1/results", {"after": "-1"}),
    (f"/v1/runs/{LONG}", {}),
    (f"/v1/results/{LONG}", {}),
    ("/v1/results/%00", {}),
]


def manifest_with(rng: random.Random, root: str) -> bytes:
    """A one-row manifest with NUL in one field (nested in meta, or in a key)."""
    row: dict[str, Any] = {
        "id": "a", "query_audio": f"{root}/q.wav", "response_audio": f"{root}/r.wav", "system": "s",
        "dataset": "d", "meta": {"speaker": "s1"},
    }  # fmt: skip
    field = rng.choice(["id", "system", "dataset", "query_emotion", "meta", "meta-key", "meta-list"])
    if field == "meta":
        row["meta"]["speaker"] = f"s{NUL}1"
    elif field == "meta-key":
        row["meta"] = {f"k{NUL}": 1}
    elif field == "meta-list":
        row["meta"] = {"tags": ["ok", NUL]}
    else:
        row[field] = f"x{NUL}y"
    return (json.dumps(row) + "\n").encode()


def test_nul_characters_and_huge_integers_are_4xx_on_every_backend(server: RunningServer) -> None:
    """PostgreSQL refuses NUL in text and integers beyond 64 bits: each must be refused before it."""
    key = server.api_key("fuzz-params")
    (server.data_root / "q.wav").write_bytes(wav_bytes(0.5, 300.0))
    (server.data_root / "r.wav").write_bytes(wav_bytes(0.5, 450.0))
    rng = random.Random(12)
    outcomes: list[tuple[str, int, str]] = []
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as client:
        for path, params in READS:
            answer = client.get(path, params=params)
            outcomes.append((f"GET {path} {params!r}", answer.status_code, answer.text))
        assert "must not contain a NUL character" in outcomes[0][2]  # said so, not as a regex
        for index in range(12):
            manifest = manifest_with(rng, str(server.data_root))
            answer = client.post(
                "/v1/runs", files={"manifest": ("m.jsonl", manifest)}, data={"name": f"run {index}"}
            )
            outcomes.append((f"POST /v1/runs {manifest!r}", answer.status_code, answer.text))
            assert answer.json()["error"]["code"] == "manifest_invalid", answer.text
            assert "NUL" in answer.json()["error"]["problems"][0]["message"]
        answer = client.post(
            "/v1/runs", files={"manifest": ("m.jsonl", b"{}")}, data={"name": f"bad{NUL}name"}
        )
        outcomes.append(("POST /v1/runs name with NUL", answer.status_code, answer.text))
        # The export's error came before its 200: the same keep-alive connection serves the next one.
        assert client.get("/v1/reports/runs/1/export", params={"dataset": NUL}).status_code == 422
        assert client.get("/health").status_code == 200

    failures = [(name, status, text[:300]) for name, status, text in outcomes if not 400 <= status < 500]
    assert not failures, failures
    for _name, _status, text in outcomes:
        assert {"code", "message"} <= set(json.loads(text)["error"])
