"""Another tenant's latency while 64 slow uploads are open (issue 12, item 1).

    python bench/bench_slow_clients.py [--requests 30] [--rounds 2] [--interval 5]

`evalsvc serve` (tiny model, keys on, default limits: 64 requests in flight, 20 s header and body
deadlines) serves tenant B's sequential `POST /v1/score` requests, each a distinct pair, in rounds
that alternate between a quiet server and one with 64 connections of tenant A open, each announcing
`Content-Length: 100000` and sending one byte every `--interval` seconds (the issue's reproduction).
Before the fix those 64 uploads held every in-flight slot and B got 429 for as long as they stayed
open. Prints B's latency p50/p99 and status codes per condition, and how the slow uploads ended.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from bench_api import Pairs, Server

from evalsvc.engine.tiny import ensure_tiny_model

SLOW_CLIENTS = 64


async def slow_upload(port: int, key: str, interval_s: float) -> tuple[bytes, float]:
    """One of tenant A's uploads: the status line it got, and after how many seconds it was closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(
        f"POST /v1/score HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n".encode()
    )

    async def drip() -> None:
        while True:
            await asyncio.sleep(interval_s)
            writer.write(b" ")
            await writer.drain()

    dripping = asyncio.create_task(drip())
    try:
        answer = (await asyncio.wait_for(reader.read(), timeout=600)).split(b"\r\n", 1)[0]
    except ConnectionResetError:  # a byte that crossed the server's close: TCP answers it with a reset
        answer = b"connection reset after the deadline"
    finally:
        dripping.cancel()
        writer.close()
    return answer, time.monotonic() - started


async def tenant_b(
    server: Server, key: str, pairs: list[tuple[bytes, bytes]]
) -> tuple[list[float], Counter[int]]:
    latencies, statuses = [], Counter[int]()
    async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": key}, timeout=120) as client:
        for query, response in pairs:
            files = {"query": ("q.wav", query, "audio/wav"), "response": ("r.wav", response, "audio/wav")}
            started = time.perf_counter()
            answer = await client.post("/v1/score", files=files)
            latencies.append((time.perf_counter() - started) * 1e3)
            statuses[answer.status_code] += 1
    return latencies, statuses


async def round_under_attack(
    server: Server, key_a: str, key_b: str, pairs: list[tuple[bytes, bytes]], interval_s: float
) -> tuple[list[float], Counter[int], list[tuple[bytes, float]]]:
    port = int(server.url.rsplit(":", 1)[1])
    slow = [asyncio.create_task(slow_upload(port, key_a, interval_s)) for _ in range(SLOW_CLIENTS)]
    await asyncio.sleep(2.0)  # all 64 connected, headers read, bodies dripping
    latencies, statuses = await tenant_b(server, key_b, pairs)
    return latencies, statuses, await asyncio.gather(*slow)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="tenant B's requests per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per condition, alternating")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a slow upload's bytes")
    args = parser.parse_args()
    pairs = Pairs()
    latency: dict[str, list[float]] = {"quiet": [], "64 slow uploads": []}
    statuses: dict[str, Counter[int]] = {name: Counter() for name in latency}
    endings: list[tuple[bytes, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tiny = ensure_tiny_model(root / "tiny", 0)
        server = Server(tiny.root, root / "server", auth=True)
        try:
            key_a, key_b = server.key("tenant-a"), server.key("tenant-b")
            asyncio.run(tenant_b(server, key_b, pairs.take(4)))  # warm-up
            for _round in range(args.rounds):
                quiet, codes = asyncio.run(tenant_b(server, key_b, pairs.take(args.requests)))
                latency["quiet"] += quiet
                statuses["quiet"] += codes
                busy, codes, ended = asyncio.run(
                    round_under_attack(server, key_a, key_b, pairs.take(args.requests), args.interval)
                )
                latency["64 slow uploads"] += busy
                statuses["64 slow uploads"] += codes
                endings += ended
        finally:
            server.stop()
    print("| tenant B, sequential `POST /v1/score` | requests | p50 | p99 | statuses |")
    print("|---|---:|---:|---:|---|")
    for name, values in latency.items():
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(statuses[name].items()))
        print(
            f"| {name} | {len(values)} | {np.percentile(values, 50):.1f} ms | {np.percentile(values, 99):.1f} ms "
            f"| {codes} |"
        )
    lines = Counter(line.decode(errors="replace") for line, _ in endings)
    held = [seconds for _, seconds in endings]
    print(
        f"\nslow uploads: {dict(lines)}; closed by the server after {min(held):.1f}-{max(held):.1f} s "
        f"(median {np.median(held):.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
