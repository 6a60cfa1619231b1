"""Report latency over a million results, on PostgreSQL and SQLite.

    python bench/bench_reports.py [--rows 1000000] [--pairs 10000] [--resamples 10000] [--repeats 3]
                                  [--postgres-url URL] [--backend postgresql --backend sqlite]

Data: one run of --rows items (10 systems, 4 datasets, 5 query emotions; 2% failed, 1% pending), each
scored item with its own result (and the copies of its scores and model version that
`record_outcomes` writes onto the item), plus two runs of --pairs items sharing their item keys (a
paired comparison by item). Rows are bulk-loaded with explicit ids (COPY on PostgreSQL, executemany
on SQLite) and the tables analysed, as a long-lived database would be.

Measured (median of --repeats after one warm-up call, each in its own session, as the CLI and the
HTTP routes call them):

- summary: `run_summary` of the big run (one GROUP BY over all its items joined with results);
- leaderboard: `leaderboards` over every run of the tenant (every dataset), and of one dataset;
- compare: `compare` of the two paired runs with --resamples bootstrap resamples.

Goals: summary and leaderboard under 1 s on PostgreSQL; the comparison under 2 s.
PostgreSQL: a database is created at the server of --postgres-url and dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
from sqlalchemy import Table, insert, text
from sqlalchemy.orm import Session

from evalsvc.engine.types import Decoding, ModelFingerprint
from evalsvc.reports import Side, compare, leaderboards, run_summary
from evalsvc.store import Result, RunItem, Store, create_run, create_tenant, ensure_model_version
from evalsvc.store.migrate import upgrade
from evalsvc.store.scratch import scratch_postgres

FINGERPRINT = ModelFingerprint("bench", None, "a" * 64, "b" * 64, "c" * 64, "empathyeval-v1", Decoding())
SYSTEMS = [f"system-{index}" for index in range(10)]
DATASETS = ["dailytalk", "esd", "iemocap", "meld"]
EMOTIONS = ["sad", "angry", "happy", "neutral", "fear"]
CHUNK = 100_000
RESULT_COLUMNS = (
    "id", "content_key", "query_sha256", "response_sha256", "model_version_id", "mode", "ns", "wa", "eu", "es", "avg",
)  # fmt: skip
ITEM_COLUMNS = (
    "id", "run_id", "item_key", "query_ref", "response_ref", "system", "dataset", "emotion", "meta", "status",
    "attempts", "last_error_code", "result_id", "ns", "wa", "eu", "es", "avg", "result_error_code",
    "model_version_id",
)  # fmt: skip


def chunks(
    rng: np.random.Generator,
    run_id: int,
    version_id: int,
    first_id: int,
    count: int,
    prefix: str,
    *,
    outcomes: bool,
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """(result rows, item rows) for items first_id .. first_id + count - 1, CHUNK at a time."""
    for start in range(first_id, first_id + count, CHUNK):
        size = min(CHUNK, first_id + count - start)
        scores = np.round(rng.uniform(1, 5, size=(size, 4)), 3)
        draws = rng.random(size) if outcomes else np.ones(size)
        systems, datasets, emotions = (
            rng.integers(len(names), size=size) for names in (SYSTEMS, DATASETS, EMOTIONS)
        )
        results, items = [], []
        for offset in range(size):
            row_id = start + offset
            key = f"{prefix}-{row_id - first_id}"
            status, error, result_id = "done", None, row_id
            if draws[offset] < 0.02:
                status, error, result_id = "failed", "audio_unreadable", None
            elif draws[offset] < 0.03:
                status, result_id = "pending", None
            copies: tuple[float | None, ...] = (None,) * 5
            if result_id is not None:
                ns, wa, eu, es = (float(value) for value in scores[offset])
                copies = (ns, wa, eu, es, (ns + wa + eu + es) / 4)
                results.append(
                    (row_id, f"{row_id:064x}", f"{row_id % 50_000:064x}", f"{row_id + 10**9:064x}", version_id,
                     "scores", *copies)
                )  # fmt: skip
            items.append(
                (row_id, run_id, key, f"q/{key}.wav", f"r/{key}.wav", SYSTEMS[systems[offset]],
                 DATASETS[datasets[offset]], EMOTIONS[emotions[offset]], "{}", status, 1, error, result_id,
                 *copies, None, version_id if result_id is not None else None)
            )  # fmt: skip
        yield results, items


def load(
    session: Session, dialect: str, rows: Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]
) -> None:
    for results, items in rows:
        if dialect == "postgresql":
            cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
            for table, columns, values in (
                ("results", RESULT_COLUMNS, results),
                ("run_items", ITEM_COLUMNS, items),
            ):
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for value in values:
                        copy.write_row(value)
        else:
            for model, columns, values in ((Result, RESULT_COLUMNS, results), (RunItem, ITEM_COLUMNS, items)):
                table: Table = model.__table__  # type: ignore[assignment]
                dicts = [dict(zip(columns, value, strict=True)) for value in values]
                for row in dicts if model is RunItem else ():
                    row["meta"] = {}
                session.execute(insert(table), dicts)


def populate(store: Store, rows: int, pairs: int) -> dict[str, int]:
    """Load the data; returns the tenant and run ids."""
    rng = np.random.default_rng(0)
    with store.session() as session:
        version = ensure_model_version(session, FINGERPRINT)
        tenant = create_tenant(session, "bench").id
        big, a, b = (
            create_run(session, name=name, mode="scores", tenant_id=tenant).id for name in ("big", "a", "b")
        )
    started = perf_counter()
    with store.session() as session:
        load(session, store.url.get_backend_name(), chunks(rng, big, version, 1, rows, "item", outcomes=True))
        load(
            session,
            store.url.get_backend_name(),
            chunks(rng, a, version, rows + 1, pairs, "pair", outcomes=False),
        )
        load(
            session,
            store.url.get_backend_name(),
            chunks(rng, b, version, rows + pairs + 1, pairs, "pair", outcomes=False),
        )
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
    print(
        f"{store.url.get_backend_name()}: loaded {rows + 2 * pairs:,} items in {perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return {"tenant": tenant, "big": big, "a": a, "b": b}


def measure(store: Store, ids: dict[str, int], args: argparse.Namespace) -> list[tuple[str, str, float, str]]:
    """(report, data size, median seconds, goal) of each timed report."""
    tenant = ids["tenant"]
    timings: list[tuple[str, str, Callable[[Session], object], str]] = [
        ("summary", f"{args.rows:,} items", lambda s: run_summary(s, ids["big"], tenant), "< 1 s"),
        ("leaderboard, all datasets", f"{args.rows + 2 * args.pairs:,} items",
         lambda s: leaderboards(s, tenant), "< 1 s"),
        ("leaderboard, one dataset", f"~{args.rows // len(DATASETS):,} items",
         lambda s: leaderboards(s, tenant, dataset=DATASETS[0]), "< 1 s"),
        (f"compare, {args.resamples:,} resamples", f"{args.pairs:,} pairs",
         lambda s: compare(s, tenant, Side(ids["a"]), Side(ids["b"]), resamples=args.resamples), "< 2 s"),
    ]  # fmt: skip
    return [(name, size, median_s(store, call, args.repeats), goal) for name, size, call, goal in timings]


def median_s(store: Store, call: Callable[[Session], object], repeats: int) -> float:
    times = []
    for attempt in range(repeats + 1):
        started = perf_counter()
        with store.session() as session:
            call(session)
        if attempt:  # the first call warms the pool and the database's cache
            times.append(perf_counter() - started)
    return statistics.median(times)


@contextmanager
def databases(backends: Sequence[str], postgres_url: str, workdir: Path) -> Iterator[dict[str, str]]:
    urls = {}
    if "sqlite" in backends:
        urls["sqlite"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
        upgrade(urls["sqlite"])
    with ExitStack() as stack:
        if "postgresql" in backends:
            urls["postgresql"] = stack.enter_context(scratch_postgres(postgres_url, prefix="evalsvc_bench"))
        yield urls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="items of the big run")
    parser.add_argument("--pairs", type=int, default=10_000, help="items of each compared run")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--backend", action="append", choices=["postgresql", "sqlite"], help="default: both")
    args = parser.parse_args()
    backends = args.backend or ["postgresql", "sqlite"]

    table: list[tuple[str, str, str, float, str]] = []
    with (
        tempfile.TemporaryDirectory() as workdir,
        databases(backends, args.postgres_url, Path(workdir)) as urls,
    ):
        for backend, url in urls.items():
            store = Store(url)
            ids = populate(store, args.rows, args.pairs)
            table += [(backend, *row) for row in measure(store, ids, args)]
            store.dispose()

    print(f"Reports over {args.rows:,} results; median of {args.repeats} calls after a warm-up.\n")
    print("| backend | report | data | time | goal (PostgreSQL) |")
    print("|---|---|---:|---:|---|")
    for backend, operation, size, seconds, goal in table:
        print(f"| {backend} | {operation} | {size} | {seconds:.3f} s | {goal} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
