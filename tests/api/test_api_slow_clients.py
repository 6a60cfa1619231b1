"""Slow and vanishing clients against a real `evalsvc serve`: real sockets on loopback.

The server has room for 4 scoring requests at once, and short read deadlines: 2 s for the request
line and headers, 8 s (+1 s per 500 bytes) for a body. 64 clients of one tenant that announce a
100 kB upload and then send a byte every 0.7 s must neither take the slots (another tenant is
served meanwhile) nor keep their connections: each gets 408 and is closed. A client that hangs up
mid-upload is counted as 499, not as a server error.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from evalsvc.engine.tiny import TinyModelPaths
from tests.api.harness import RunningServer, start_server, stop_server, wav_bytes

SLOW_CLIENTS = 64
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 8.0
FLAGS = (
    "--max-in-flight", "4", "--header-timeout", str(HEADER_TIMEOUT_S), "--body-timeout", str(BODY_TIMEOUT_S),
    "--max-new-tokens", "4", "--api-servers", "1",
)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("server-slow"), tiny_paths, FLAGS)
    yield running
    stop_server(running)


@dataclass
class Ending:
    """How the server ended a slow connection: its status line and body, and when it closed it."""

    answer: bytes
    closed_after_s: float

    @property
    def status(self) -> int:
        return int(self.answer.split(b" ", 2)[1]) if self.answer.startswith(b"HTTP/1.1 ") else 0

    @property
    def error_code(self) -> str:
        return str(json.loads(self.answer.partition(b"\r\n\r\n")[2])["error"]["code"])


def request_head(key: str, content_length: int) -> bytes:
    return (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


async def trickle(port: int, head: bytes, body_bytes: int, interval_s: float) -> Ending:
    """Send `head` at once, then one body byte every `interval_s` until the server answers or closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)

    async def drip() -> None:
        for _ in range(body_bytes):
            await asyncio.sleep(interval_s)
            writer.write(b" ")
            await writer.drain()

    dripping = asyncio.create_task(drip())
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=60)  # until the server closes
    except ConnectionResetError:  # a byte of ours crossed the server's close: TCP resets, the 408 is lost
        answer = b""
    finally:
        dripping.cancel()
        writer.close()
    return Ending(answer, time.monotonic() - started)


async def drip_headers(port: int, head: bytes, interval_s: float) -> Ending:
    """Send the request line, then the headers one byte every `interval_s`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    line, _, rest = head.partition(b"\r\n")
    writer.write(line + b"\r\n")

    async def drip() -> None:
        for byte in rest:
            await asyncio.sleep(interval_s)
            writer.write(bytes([byte]))
            await writer.drain()

    dripping = asyncio.create_task(drip())
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=60)
    finally:
        dripping.cancel()
        writer.close()
    return Ending(answer, time.monotonic() - started)


def score_files(seed: int) -> dict[str, tuple[str, bytes, str]]:
    return {
        "query": ("q.wav", wav_bytes(0.6, 500.0 + 29 * seed), "audio/wav"),
        "response": ("r.wav", wav_bytes(0.6, 800.0 + 31 * seed), "audio/wav"),
    }


def metric(server: RunningServer, endpoint: str, status: int) -> float:
    wanted = f'evalsvc_http_requests_total{{endpoint="{endpoint}",status="{status}"}} '
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line.removeprefix(wanted))
    return 0.0


def test_slow_uploads_hold_no_slot_and_are_cut_off(server: RunningServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    slow_key, other_key = server.api_key("slow-uploads"), server.api_key("other-tenant")
    timeouts_before = metric(server, "/v1/score", 408)

    async def scenario() -> tuple[list[Ending], list[httpx.Response], float]:
        slow = [
            asyncio.create_task(trickle(port, request_head(slow_key, 100_000), 100_000, 0.7))
            for _ in range(SLOW_CLIENTS)
        ]
        await asyncio.sleep(1.0)  # every slow client is connected and dripping
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            answers = [
                await client.post("/v1/score", headers={"X-API-Key": key}, files=score_files(seed))
                for seed, key in enumerate((other_key, other_key, slow_key))
            ]
        served_at = time.monotonic()
        endings = await asyncio.gather(*slow)
        return endings, answers, served_at

    started = time.monotonic()
    endings, answers, served_at = asyncio.run(scenario())

    # Served while all 64 uploads were still open (none is cut before BODY_TIMEOUT_S): the slots
    # are taken by requests that have been read, and the slow tenant itself is served too.
    assert [answer.status_code for answer in answers] == [200, 200, 200], [a.text for a in answers]
    assert served_at - started < min(ending.closed_after_s for ending in endings)
    # Each slow upload is answered 408 and closed, near its deadline: 8 s + 1 s per 500 bytes. (A
    # client whose next byte crosses the close gets a TCP reset instead of the answer: the server's
    # count shows that it answered all of them.)
    answered = [ending for ending in endings if ending.answer]
    assert len(answered) >= SLOW_CLIENTS // 2 and {ending.status for ending in answered} == {408}
    assert {ending.error_code for ending in answered} == {"request_timeout"}
    assert all(BODY_TIMEOUT_S - 1 < ending.closed_after_s < BODY_TIMEOUT_S + 10 for ending in endings)
    assert metric(server, "/v1/score", 408) - timeouts_before == SLOW_CLIENTS


def test_slow_headers_and_silent_connections_are_closed_with_408(server: RunningServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    head = request_head("evs_whatever", 10)

    async def scenario() -> list[Ending]:
        silent = trickle(port, b"", 0, 1.0)  # connects and sends nothing at all
        return list(await asyncio.gather(silent, drip_headers(port, head, 0.5)))

    for ending in asyncio.run(scenario()):
        assert ending.status == 408 and ending.error_code == "request_timeout"
        assert HEADER_TIMEOUT_S - 0.5 < ending.closed_after_s < HEADER_TIMEOUT_S + 10
    assert metric(server, "other", 408) >= 2


def test_a_client_that_hangs_up_mid_upload_is_a_499_not_a_server_error(server: RunningServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    key = server.api_key("hangs-up")
    before = {status: metric(server, "/v1/score", status) for status in (499, 500)}

    async def hang_up(body: bytes, content_type: str) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = request_head(key, 100_000).replace(b"application/json", content_type.encode())
        writer.write(head + body)
        await writer.drain()
        await asyncio.sleep(0.5)  # the server is reading the body now
        writer.close()
        await writer.wait_closed()

    boundary = "x" * 16
    multipart = f'--{boundary}\r\nContent-Disposition: form-data; name="query"; filename="q.wav"\r\n\r\nRIFF'
    asyncio.run(hang_up(b'{"query": {"audio_b64": "AAAA', "application/json"))
    asyncio.run(hang_up(multipart.encode(), f"multipart/form-data; boundary={boundary}"))
    deadline = time.monotonic() + 30
    while metric(server, "/v1/score", 499) - before[499] < 2 and time.monotonic() < deadline:
        time.sleep(0.2)

    assert metric(server, "/v1/score", 499) - before[499] == 2
    assert metric(server, "/v1/score", 500) == before[500]
    log = server.log.read_text(errors="replace")
    assert "unexpected error" not in log and "Traceback" not in log, server.log_tail()
