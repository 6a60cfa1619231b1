"""Store throughput and cache-hit latency, on PostgreSQL and SQLite.

    python bench/bench_store.py [--rows 50000] [--batch 1000] [--rounds 3] [--postgres-url URL]

1. Batched result upserts: `store_results` (the bulk path: COPY + one set-based upsert on PostgreSQL,
   executemany upsert on SQLite), each batch its own transaction, ids of every row returned. Measured
   for new rows and again for the same rows (all conflicts: what a resumed run does), next to the
   plain executemany `INSERT ... ON CONFLICT` plus id lookup that PostgreSQL would otherwise use.
2. Cache-hit latency: `score_pairs` answering one stored pair from the store, against the same call
   running the tiny model (scores mode, batch 1, one 6 s query and response). The tiny model is a toy;
   the real 30B judge takes seconds per pair, so the real ratio is far larger.

PostgreSQL: a database is created for the run at the server of --postgres-url (default: the local
test server) and dropped afterwards. Rounds are interleaved across backends; medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from time import perf_counter

from sqlalchemy.orm import Session

from evalsvc.audio import AudioLimits, decode_audio
from evalsvc.engine.engine import Engine
from evalsvc.engine.types import AudioPair, Decoding, ModelFingerprint
from evalsvc.scoring import ResultCache, score_pairs
from evalsvc.settings import Settings
from evalsvc.store import (
    Result,
    ResultRecord,
    Store,
    content_key,
    ensure_model_version,
    result_ids,
    store_results,
)
from evalsvc.store.migrate import upgrade
from evalsvc.store.scratch import scratch_postgres
from evalsvc.store.upsert import upsert

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FINGERPRINT = ModelFingerprint("bench", None, "a" * 64, "b" * 64, "c" * 64, "empathyeval-v1", Decoding())


def records(start: int, count: int) -> list[ResultRecord]:
    rows = []
    for index in range(start, start + count):
        query, response = f"{index:064x}", f"{index + 10**9:064x}"
        value = 1.0 + (index % 400) / 100
        rows.append(
            ResultRecord(
                content_key=content_key(query, response, FINGERPRINT.key, "scores"),
                query_sha256=query,
                response_sha256=response,
                mode="scores",
                ns=value,
                wa=value,
                eu=value,
                es=value,
                avg=value,
                latency_ms=12.5,
                query_duration_s=4.0,
                response_duration_s=5.0,
            )
        )
    return rows


Writer = Callable[[Session, int, list[ResultRecord]], dict[str, int]]


def rows_per_second(store: Store, batches: list[list[ResultRecord]], write: Writer) -> float:
    with store.session() as session:
        version_id = ensure_model_version(session, FINGERPRINT)
    started = perf_counter()
    for batch in batches:
        with store.session() as session:
            ids = write(session, version_id, batch)
            assert len(ids) == len(batch)
    return sum(len(batch) for batch in batches) / (perf_counter() - started)


def executemany_then_ids(session: Session, version_id: int, batch: list[ResultRecord]) -> dict[str, int]:
    """The generic path, for comparison: executemany `INSERT ... ON CONFLICT DO NOTHING`, then the ids."""
    rows = [vars(record) | {"model_version_id": version_id} for record in batch]
    upsert(session, Result, rows, conflict=["content_key"])
    return result_ids(session, (record.content_key for record in batch))


def split(rows: list[ResultRecord], size: int) -> list[list[ResultRecord]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm: connection, compiled statement
    times = []
    for _ in range(repeats):
        started = perf_counter()
        call()
        times.append((perf_counter() - started) * 1e3)
    return statistics.median(times)


@contextmanager
def databases(postgres_url: str, workdir: Path) -> Iterator[dict[str, str]]:
    """A migrated SQLite file and, when the server answers, a migrated PostgreSQL database."""
    urls = {"sqlite": f"sqlite:///{workdir / 'bench.sqlite3'}"}
    upgrade(urls["sqlite"])
    with ExitStack() as stack:
        try:
            urls["postgresql"] = stack.enter_context(scratch_postgres(postgres_url, prefix="evalsvc_bench"))
        except Exception as error:  # the table then says PostgreSQL was not measured, and why
            print(f"PostgreSQL not measured: {str(error).splitlines()[0]}", file=sys.stderr)
        yield urls


def measure_throughput(
    stores: dict[str, Store], rows: int, batch: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Median rows/s per backend of each write path, rounds interleaved across backends."""
    samples: dict[str, dict[str, list[float]]] = {backend: {} for backend in stores}
    next_row = 0
    for _ in range(rounds):
        for backend, store in stores.items():
            fresh = split(records(next_row, rows), batch)
            other = split(records(next_row + rows, rows), batch)
            next_row += 2 * rows
            measured = samples[backend]
            measured.setdefault("new", []).append(rows_per_second(store, fresh, store_results))
            measured.setdefault("conflicts", []).append(rows_per_second(store, fresh, store_results))
            if backend == "postgresql":  # on SQLite this is the path store_results takes anyway
                measured.setdefault("executemany", []).append(
                    rows_per_second(store, other, executemany_then_ids)
                )
    return {
        backend: {name: statistics.median(values) for name, values in measured.items()}
        for backend, measured in samples.items()
    }


def measure_latency(stores: dict[str, Store], data_dir: Path, lookups: int) -> tuple[float, dict[str, float]]:
    """Median ms of a tiny-model `score_pairs` call, and of a cache hit per backend."""
    limits = AudioLimits()
    pair = AudioPair(
        decode_audio(EXAMPLES / "query.wav", limits), decode_audio(EXAMPLES / "response.wav", limits)
    )
    engine = Engine.load(Settings(model="tiny", data_dir=data_dir))
    engine.warmup()
    model_ms = median_ms(lambda: score_pairs(engine, [pair], "scores"), max(lookups // 4, 5))
    hit_ms: dict[str, float] = {}
    for backend, store in stores.items():
        cache = ResultCache(store)
        [stored] = score_pairs(engine, [pair], "scores", cache=cache)
        assert not stored.cached

        def hit(cache: ResultCache = cache) -> None:
            [answer] = score_pairs(engine, [pair], "scores", cache=cache)
            assert answer.cached

        hit_ms[backend] = median_ms(hit, lookups)
    return model_ms, hit_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="result rows per measurement")
    parser.add_argument("--batch", type=int, default=1_000, help="rows per batch (one transaction each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=200, help="timed cache hits per backend")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir, databases(args.postgres_url, Path(workdir)) as urls:
        stores = {backend: Store(url) for backend, url in urls.items()}
        throughput = measure_throughput(stores, args.rows, args.batch, args.rounds)
        model_ms, hit_ms = measure_latency(stores, Path(workdir) / "data", args.lookups)
        for store in stores.values():
            store.dispose()

    print(
        f"Batched result upserts: {args.rows:,} rows in batches of {args.batch:,}, median over {args.rounds} rounds.\n"
    )
    print("| backend | store_results, new rows | store_results, all conflicts | executemany upsert + ids |")
    print("|---|---:|---:|---:|")
    for backend, measured in throughput.items():
        cells = [
            f"{measured[name]:,.0f} rows/s" if name in measured else "(what store_results does)"
            for name in ("new", "conflicts", "executemany")
        ]
        print(f"| {backend} | {' | '.join(cells)} |")
    print(f"\nCache hit vs tiny-model call (`score_pairs`, one pair, median of {args.lookups} hits).\n")
    print("| backend | cache hit | tiny-model scoring call | model call / cache hit |")
    print("|---|---:|---:|---:|")
    for backend, milliseconds in hit_ms.items():
        print(f"| {backend} | {milliseconds:.2f} ms | {model_ms:.1f} ms | {model_ms / milliseconds:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
