"""HTTP overhead and dynamic-batching throughput of `evalsvc serve` on the tiny model.

    python bench/bench_api.py [--requests 60] [--clients 16] [--per-client 4] [--rounds 3]

1. Overhead: sequential `POST /v1/score` requests (multipart, batching on: max batch 8, default
   batch timeout), each interleaved with the in-process engine scoring the same pair, so that the
   noise of a shared machine hits both alike. Overhead per request = HTTP latency minus that pair's
   in-process engine time: parsing, audio decoding, the cache lookup, the queue to the model worker,
   the batch wait, storing the result and the JSON, as the service adds them. The same difference
   against the engine time the worker itself reports (same process, same request) is less noisy.
2. Throughput: 16 concurrent clients against a server with batching on (max batch 8) and one with
   batching off, both running, in alternating rounds (on, off, on, off, ...) so that load from other
   work on the machine hits both alike; the table gives the median pairs/s of each and their ratio.

Every request is a distinct pair (the speech examples with a tiny per-request gain), so nothing is a
cache hit; each server has a fresh database. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import ensure_tiny_model
from evalsvc.engine.types import AudioPair
from evalsvc.settings import Settings
from evalsvc.store import Store, create_tenant, issue_api_key

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pairs"
EVALSVC = Path(sys.executable).with_name("evalsvc")


class Pairs:
    """Distinct pairs of the same lengths, made on demand: the example speech at gains 1, 0.9999, ..."""

    def __init__(self) -> None:
        rows = [
            json.loads(line)
            for line in (EXAMPLES / "manifest.jsonl").read_text().splitlines()
            if line.strip()
        ]
        self._sources = [
            tuple(
                soundfile.read(EXAMPLES / row[side], dtype="float32")
                for side in ("query_audio", "response_audio")
            )
            for row in rows
        ]
        self._next = 0

    def take(self, count: int) -> list[tuple[bytes, bytes]]:
        taken = [self._pair(index) for index in range(self._next, self._next + count)]
        self._next += count
        return taken

    def _pair(self, index: int) -> tuple[bytes, bytes]:
        (query, q_rate), (response, r_rate) = self._sources[index % len(self._sources)]
        gain = 1.0 - 1e-4 * (index // len(self._sources))
        return _wav(query * gain, q_rate), _wav(response * gain, r_rate)


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


class Server:
    """`evalsvc serve` on a free port with a fresh data directory, stopped with SIGINT; without API
    keys unless `auth` (then `key(tenant)` issues them)."""

    def __init__(self, tiny_model: Path, root: Path, *flags: str, auth: bool = False) -> None:
        data_dir = root / "data"
        self.settings = Settings(data_dir=data_dir)
        shutil.copytree(tiny_model, Settings(data_dir=data_dir).tiny_model_dir)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [str(EVALSVC), "serve", "--model", "tiny", "--data-dir", str(data_dir), "--port", str(port)]
        env = {name: value for name, value in os.environ.items() if not name.startswith("EVALSVC_")}
        self.log = root / "server.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [*command, *([] if auth else ["--no-auth"]), "--log-level", "warning", *flags],
                stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 300
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.25)

    def key(self, tenant: str) -> str:
        store = Store.from_settings(self.settings)
        with store.session() as session:
            _row, key = issue_api_key(session, create_tenant(session, tenant).id, "benchmark")
        store.dispose()
        return key

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def post(client: httpx.Client, pair: tuple[bytes, bytes]) -> dict[str, object]:
    files = {"query": ("q.wav", pair[0], "audio/wav"), "response": ("r.wav", pair[1], "audio/wav")}
    answer = client.post("/v1/score", files=files)
    answer.raise_for_status()
    payload = answer.json()
    assert payload["cached"] is False, "a benchmark pair was a cache hit"
    return payload


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure_overhead(
    server: Server, engine: Engine, pairs: list[tuple[bytes, bytes]]
) -> dict[str, list[float]]:
    limits = AudioLimits()
    latency, in_process, in_worker = [], [], []
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for pair in pairs:
            started = time.perf_counter()
            payload = post(client, pair)
            latency.append((time.perf_counter() - started) * 1e3)
            in_worker.append(float(payload["timings_ms"]["total_ms"]))  # type: ignore[index]
            decoded = AudioPair(decode_audio(pair[0], limits), decode_audio(pair[1], limits))
            started = time.perf_counter()
            engine.score([decoded], "scores")
            in_process.append((time.perf_counter() - started) * 1e3)
    return {
        "latency": latency,
        "engine": in_process,
        "overhead": [http - local for http, local in zip(latency, in_process, strict=True)],
        "worker_overhead": [http - worker for http, worker in zip(latency, in_worker, strict=True)],
    }


def throughput(server: Server, pairs: list[tuple[bytes, bytes]], clients: int) -> float:
    """Pairs per second with `clients` threads, each with its own connection, splitting `pairs`."""
    shares = [pairs[index::clients] for index in range(clients)]

    def run(share: list[tuple[bytes, bytes]]) -> None:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            for pair in share:
                post(client, pair)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(run, shares))
    return len(pairs) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="sequential requests for the latency")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=4, help="requests per client and round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per configuration")
    args = parser.parse_args()

    pairs = Pairs()
    per_round = args.clients * args.per_client
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tiny = ensure_tiny_model(root / "tiny", 0)
        engine = Engine.load(Settings(model=str(tiny.model), adapter=tiny.adapter, heads=tiny.heads))
        engine.warmup()
        servers = {
            "on": Server(tiny.root, root / "batching", "--max-batch-size", "8"),
            "off": Server(tiny.root, root / "unbatched", "--max-batch-size", "1"),
        }
        try:
            for server in servers.values():
                measure_overhead(server, engine, pairs.take(4))  # warm-up
            overhead = measure_overhead(servers["on"], engine, pairs.take(args.requests))
            rates: dict[str, list[float]] = {"on": [], "off": []}
            for _round in range(args.rounds):
                for name, server in servers.items():
                    rates[name].append(throughput(server, pairs.take(per_round), args.clients))
        finally:
            for server in servers.values():
                server.stop()

    batched, unbatched = statistics.median(rates["on"]), statistics.median(rates["off"])
    print(f"tiny model, CPU, {os.cpu_count()} cores; each pair is 2 clips of example speech\n")
    print("| measure | p50 | p99 |")
    print("|---|---|---|")
    for name, label in (
        ("latency", f"`POST /v1/score` latency, sequential, {args.requests} requests (ms)"),
        ("engine", "in-process `Engine.score` of the same pair (ms)"),
        ("overhead", "**service overhead** = latency - in-process engine time (ms)"),
        ("worker_overhead", "latency - the engine time the model worker reports for it (ms)"),
    ):
        values = overhead[name]
        print(f"| {label} | {percentile(values, 50):.1f} | {percentile(values, 99):.1f} |")
    print(
        f"\n| throughput, {args.clients} concurrent clients, {args.rounds} rounds of {per_round} pairs | pairs/s |"
    )
    print("|---|---|")
    print(f"| batching on (max batch 8), median | {batched:.2f} |")
    print(f"| batching off, median | {unbatched:.2f} |")
    print(f"| ratio on / off | {batched / unbatched:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
