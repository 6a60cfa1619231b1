"""Bulk throughput on the tiny model: in process vs RQ with 1 and 2 workers, and the queue's cost.

    python bench/bench_bulk.py [--pairs 200] [--rounds 5] [--shard-size 20] [--batch-size 8]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--redis-url redis://127.0.0.1:6379/7]

All three modes run in one invocation, in interleaved rounds, each time on a fresh PostgreSQL
database (so no pair is a cache hit) with the same 200 distinct pairs of speech. The best round of
each mode is reported: on a shared machine it is the one least disturbed by other work, and a run
takes seconds, so one busy spell would otherwise decide the ratios. The clock runs from the moment the
shards are queued (or the in-process loop starts) until SQL shows every item finished; model loading
is excluded everywhere: workers are timed only once they are registered, i.e. with the model loaded.
The queue's overhead per item is (RQ with 1 worker - in process) / pairs: what the queue, the job
round trips and the per-batch heartbeats add when nothing runs in parallel. Every process scores with
one torch thread (a worker per core): the modes then compare at equal compute per process, and a
multi-threaded kernel is not stalled whenever another process takes one of its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import soundfile
import torch
from redis import Redis
from rq import Queue, Worker

from evalsvc.audio import AudioLimits
from evalsvc.bulk.manifest import read_manifest
from evalsvc.bulk.processing import ShardContext
from evalsvc.bulk.queue import ShardQueue
from evalsvc.bulk.run_operations import queue_run, record_runs, run_in_process, run_progress
from evalsvc.bulk.scorers import LocalItemScorer
from evalsvc.engine.engine import Engine
from evalsvc.scoring import ResultCache
from evalsvc.settings import Settings
from evalsvc.store import Store
from evalsvc.store.run_records import RunProgress
from evalsvc.store.scratch import scratch_postgres

EVALSVC = Path(sys.executable).with_name("evalsvc")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "pairs"


def write_pairs(root: Path, count: int) -> Path:
    """`count` distinct pairs of real speech and their manifest.

    The spoken example pairs (examples/pairs, 4-6 s clips), each copy scaled by its own tiny gain so
    that every pair has its own content hash: the model hears speech of realistic length, and no pair
    is a cache hit of another.
    """
    rows = [json.loads(line) for line in (EXAMPLES / "manifest.jsonl").read_text().splitlines() if line]
    manifest = []
    for index in range(count):
        example = rows[index % len(rows)]
        gain = 1.0 - index * 1e-4
        for side in ("query_audio", "response_audio"):
            samples, rate = soundfile.read(EXAMPLES / example[side], dtype="float32")
            soundfile.write(root / f"{index}-{example[side]}", samples * gain, rate, subtype="FLOAT")
        manifest.append(
            {
                "id": f"pair-{index}",
                "query_audio": f"{index}-{example['query_audio']}",
                "response_audio": f"{index}-{example['response_audio']}",
                "system": example["system"],
                "dataset": "bench",
            }
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in manifest))
    return root / "manifest.jsonl"


def wait_finished(store: Store, run_id: int) -> RunProgress:
    while not (progress := run_progress(store, run_id)).finished:
        time.sleep(0.05)  # not finer: the poller must not take CPU from the workers it times
    return progress


def in_process(settings: Settings, engine: Engine, manifest: Path) -> float:
    store = Store.from_settings(settings)
    items = read_manifest(manifest, [manifest.parent]).accepted(skip_invalid=False)
    [run_id] = record_runs(store, name="bench-inline", mode="scores", items=items)
    scorer = LocalItemScorer(engine, ResultCache(store), AudioLimits())
    started = time.perf_counter()
    run_in_process(
        store,
        ShardContext.from_settings(settings, store, scorer),
        run_id,
        settings.bulk_shard_size,
        lambda _p: None,
    )
    elapsed = time.perf_counter() - started
    assert wait_finished(store, run_id).done == len(items)
    store.dispose()
    return elapsed


def queued(settings: Settings, manifest: Path, workers: int, data_dir: Path) -> float:
    store = Store.from_settings(settings)
    items = read_manifest(manifest, [manifest.parent]).accepted(skip_invalid=False)
    [run_id] = record_runs(store, name=f"bench-rq-{workers}", mode="scores", items=items)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVALSVC_")} | {
        "EVALSVC_MODEL": "tiny",
        "EVALSVC_DATA_DIR": str(data_dir),
        "EVALSVC_DATABASE_URL": str(settings.database_url),
        "EVALSVC_REDIS_URL": settings.redis_url,
        "EVALSVC_BULK_QUEUE": settings.bulk_queue,
        "EVALSVC_BULK_BATCH_SIZE": str(settings.bulk_batch_size),
        "OMP_NUM_THREADS": "1",  # one torch thread per process, as in this process (see the docstring)
    }
    processes = [
        subprocess.Popen(
            [str(EVALSVC), "worker", "--no-scheduler"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(workers)
    ]
    try:
        queue = Queue(settings.bulk_queue, connection=Redis.from_url(settings.redis_url))
        while len(Worker.all(queue=queue)) < workers:  # registered = model loaded and warm
            if any(process.poll() is not None for process in processes):
                raise RuntimeError("a worker exited during start-up")
            time.sleep(0.1)
        started = time.perf_counter()
        queue_run(store, ShardQueue.from_settings(settings), run_id, settings.bulk_shard_size)
        progress = wait_finished(store, run_id)
        elapsed = time.perf_counter() - started
        assert progress.done == len(items), progress
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        store.dispose()
    return elapsed


MODES = (("in process", 0), ("RQ, 1 worker", 1), ("RQ, 2 workers", 2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best is reported")
    parser.add_argument("--shard-size", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    args = parser.parse_args()

    samples: dict[str, list[float]] = {label: [] for label, _ in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = write_pairs(root, args.pairs)
        base = Settings(
            model="tiny",
            data_dir=root,
            redis_url=args.redis_url,
            bulk_queue=f"bench-{uuid.uuid4().hex[:8]}",
            bulk_shard_size=args.shard_size,
            bulk_batch_size=args.batch_size,
        )
        torch.set_num_threads(1)
        engine = Engine.load(base)  # also builds the tiny model in data_dir, for the workers
        engine.warmup()
        for _ in range(args.rounds):  # interleaved, so that a busy spell of the machine hits every mode
            for label, workers in MODES:
                with scratch_postgres(args.postgres_url, prefix="evalsvc_bench") as url:
                    settings = base.model_copy(update={"database_url": url})
                    if workers:
                        samples[label].append(queued(settings, manifest, workers, root))
                    else:
                        samples[label].append(in_process(settings, engine, manifest))
        Redis.from_url(args.redis_url).delete(f"rq:queue:{base.bulk_queue}")

    timings = {label: min(values) for label, values in samples.items()}
    reference = timings["in process"]
    print(
        f"tiny model, scores mode, {args.pairs} distinct speech pairs, shards of {args.shard_size}, "
        f"batches of {args.batch_size}, PostgreSQL + Redis, {os.cpu_count()} CPU cores, 1 torch thread per process, "
        f"best of {args.rounds} interleaved rounds"
    )
    print("| mode | wall s | pairs/s | vs in process |")
    print("|---|---:|---:|---:|")
    for label, seconds in timings.items():
        print(f"| {label} | {seconds:.2f} | {args.pairs / seconds:.1f} | {reference / seconds:.2f}x |")
    overhead_ms = (timings["RQ, 1 worker"] - reference) / args.pairs * 1e3
    print(f"\nqueue overhead per item (RQ 1 worker - in process): {overhead_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
