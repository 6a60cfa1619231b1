"""The shard function in process, on PostgreSQL: exactly once per item, failures, retries, cancel."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from evalsvc.audio import AudioLimits
from evalsvc.bulk.manifest import read_manifest
from evalsvc.bulk.processing import ShardContext, ShardReport, process_shard
from evalsvc.bulk.run_operations import (
    cancel_run,
    pending_shards,
    record_runs,
    reopen_run,
    run_in_process,
    run_state,
)
from evalsvc.bulk.scorers import LocalItemScorer
from evalsvc.engine.engine import Engine
from evalsvc.engine.types import AudioPair, ModelFingerprint, PairResult
from evalsvc.errors import ServiceBusy, StoreUnavailable
from evalsvc.scoring import ResultCache
from evalsvc.settings import Mode, Settings
from evalsvc.store import ItemOutcome, Run, RunItem, Store, record_outcomes, refresh_run_counts
from evalsvc.store.run_records import PendingItem, RunProgress
from tests.bulk.conftest import PAIRS, SMALL, item_states, result_count, write_jsonl

pytestmark = pytest.mark.integration


class Wrapped:
    """The engine with a hook before each batch: a test's way to make the model fail on cue."""

    def __init__(self, engine: Engine, before: object = None) -> None:
        self.engine = engine
        self.before = before
        self.batches: list[int] = []

    @property
    def fingerprint(self) -> ModelFingerprint:
        return self.engine.fingerprint

    def score(self, pairs: Sequence[AudioPair], mode: Mode) -> list[PairResult]:
        self.batches.append(len(pairs))
        if callable(self.before):
            self.before(pairs)
        return self.engine.score(pairs, mode)


def context_for(
    store: Store, scorer: object, settings: Settings, sleeps: list[float] | None = None
) -> ShardContext:
    local = LocalItemScorer(scorer, ResultCache(store), AudioLimits.from_settings(settings))  # type: ignore[arg-type]
    return ShardContext(
        store, local, settings.bulk_batch_size, batch_retries=2, backoff_s=0.5,
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
    )  # fmt: skip


def record(store: Store, manifest: Path, name: str = "run") -> int:
    items = read_manifest(manifest, [manifest.parent]).accepted(skip_invalid=False)
    return record_runs(store, name=name, mode="scores", items=items)[0]


def ignore(_progress: RunProgress) -> None:
    return None


def test_a_run_scores_every_item_exactly_once(
    store: Store, bulk_settings: Settings, engine: Engine, manifest: Path
) -> None:
    run_id = record(store, manifest)
    scorer = Wrapped(engine)
    seen: list[RunProgress] = []
    reports = run_in_process(store, context_for(store, scorer, bulk_settings), run_id, 10, seen.append)

    assert len(reports) == 5 and sum(report.done for report in reports) == PAIRS
    assert item_states(store, run_id) == {"done": PAIRS}
    assert result_count(store) == PAIRS
    assert scorer.batches == [4, 4, 2] * 5  # batches never cross shards
    assert seen[-1].done == PAIRS and seen[-1].finished
    summary = run_state(store, run_id)
    assert (summary.status, summary.items, summary.done, summary.failed) == ("done", PAIRS, PAIRS, 0)
    with store.session() as session:
        linked = {item.result_id for item in session.query(RunItem).filter_by(run_id=run_id)}
    assert len(linked) == PAIRS and None not in linked

    # Running it again (a retried or resumed shard) finds nothing pending and scores nothing.
    assert pending_shards(store, run_id, 10) == []
    again = run_in_process(store, context_for(store, scorer, bulk_settings), run_id, 10, ignore)
    assert again == [] and len(scorer.batches) == 15 and result_count(store) == PAIRS


def test_pairs_scored_in_an_earlier_run_are_reused_not_rescored(
    store: Store, bulk_settings: Settings, engine: Engine, small_manifest: Path
) -> None:
    first = record(store, small_manifest, "first")
    run_in_process(store, context_for(store, engine, bulk_settings), first, 10, ignore)

    def no_model(_pairs: Sequence[AudioPair]) -> None:
        raise AssertionError("every pair is in the store: the model must not be called")

    second = record(store, small_manifest, "second")
    run_in_process(store, context_for(store, Wrapped(engine, no_model), bulk_settings), second, 10, ignore)
    assert item_states(store, second) == {"done": SMALL}
    assert result_count(store) == SMALL
    with store.session() as session:
        links = [
            {item.item_key: item.result_id for item in session.query(RunItem).filter_by(run_id=run)}
            for run in (first, second)
        ]
    assert links[0] == links[1]


def test_bad_audio_fails_its_item_and_the_shard_goes_on(
    store: Store, bulk_settings: Settings, engine: Engine, pairs_dir: Path, tmp_path: Path
) -> None:
    for name in ("q0.wav", "q1.wav", "r0.flac"):
        shutil.copy(pairs_dir / name, tmp_path / name)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    rows = [
        {"id": key, "query_audio": query, "response_audio": "r0.flac", "system": "s", "dataset": "d"}
        for key, query in (("a", "q0.wav"), ("bad", "corrupt.wav"), ("c", "q1.wav"))
    ]
    write_jsonl(tmp_path / "manifest.jsonl", rows)
    run_id = record(store, tmp_path / "manifest.jsonl")
    run_in_process(store, context_for(store, engine, bulk_settings), run_id, 10, ignore)

    assert item_states(store, run_id) == {"done": 2, "failed": 1}
    with store.session() as session:
        bad = session.query(RunItem).filter_by(run_id=run_id, item_key="bad").one()
        assert (bad.last_error_code, bad.attempts, bad.result_id) == ("audio_unreadable", 1, None)
        assert bad.last_error.startswith("query: ")
    summary = run_state(store, run_id)
    assert summary.status == "done" and summary.errors == {"audio_unreadable": 1}

    # Fixed file, `resume --retry-failed`: the failed item runs again, the others are not touched.
    shutil.copy(pairs_dir / "q1.wav", tmp_path / "corrupt.wav")
    assert reopen_run(store, run_id, retry_failed=True) == 1
    run_in_process(store, context_for(store, engine, bulk_settings), run_id, 10, ignore)
    assert item_states(store, run_id) == {"done": 3}
    with store.session() as session:
        fixed = session.query(RunItem).filter_by(run_id=run_id, item_key="bad").one()
        assert fixed.attempts == 2 and fixed.result_id is not None
    assert run_state(store, run_id).status == "done"


def test_a_pair_that_breaks_the_model_fails_alone(
    store: Store, bulk_settings: Settings, engine: Engine, manifest: Path
) -> None:
    run_id = record(store, manifest)
    poison = None

    def explode(pairs: Sequence[AudioPair]) -> None:
        nonlocal poison
        poison = poison or pairs[1].query.sha256 + pairs[1].response.sha256
        if any(pair.query.sha256 + pair.response.sha256 == poison for pair in pairs):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    shard = pending_shards(store, run_id, 10)[0]
    report = process_shard(context_for(store, Wrapped(engine, explode), bulk_settings), shard)
    assert (report.done, report.failed) == (9, 1)
    with store.session() as session:
        [failed] = session.query(RunItem).filter_by(run_id=run_id, status="failed").all()
    assert failed.last_error_code == "internal_error" and "RuntimeError" in failed.last_error


@pytest.mark.parametrize("error", [ServiceBusy("the model tier is busy"), StoreUnavailable("database down")])
def test_transient_failures_are_retried_with_backoff(
    store: Store, bulk_settings: Settings, engine: Engine, manifest: Path, error: Exception
) -> None:
    run_id = record(store, manifest)
    failures = [error, error]

    def flaky(_pairs: Sequence[AudioPair]) -> None:
        if failures:
            raise failures.pop()

    sleeps: list[float] = []
    shard = pending_shards(store, run_id, 10)[0]
    beats: list[int] = []
    report = process_shard(
        context_for(store, Wrapped(engine, flaky), bulk_settings, sleeps),
        shard,
        heartbeat=lambda: beats.append(1),
    )
    assert (report.done, report.failed) == (10, 0)
    assert sleeps == [0.5, 1.0]  # exponential backoff
    assert len(beats) == 2 + 3  # alive before each wait, and after each of the 3 batches

    def down(_pairs: Sequence[AudioPair]) -> None:
        raise ServiceBusy("still busy")

    with pytest.raises(ServiceBusy):
        process_shard(
            context_for(store, Wrapped(engine, down), bulk_settings), pending_shards(store, run_id, 10)[0]
        )
    assert item_states(store, run_id) == {"done": 10, "pending": PAIRS - 10}  # nothing marked failed


def test_cancel_stops_further_items(
    store: Store, bulk_settings: Settings, engine: Engine, manifest: Path
) -> None:
    run_id = record(store, manifest)

    def cancel_after_first_batch(progress: RunProgress) -> None:
        if progress.done == bulk_settings.bulk_batch_size:
            cancel_run(store, None, run_id)

    reports = run_in_process(
        store, context_for(store, engine, bulk_settings), run_id, 10, cancel_after_first_batch
    )
    assert [report.cancelled for report in reports] == [True]
    assert item_states(store, run_id) == {"done": 4, "pending": PAIRS - 4}
    with store.session() as session:
        assert session.get_one(Run, run_id).status == "cancelled"
    # A shard that starts after the cancellation scores nothing.
    late = process_shard(context_for(store, engine, bulk_settings), pending_shards(store, run_id, 10)[-1])
    assert late.cancelled and late.done == 0
    assert run_state(store, run_id).status == "cancelled"


def test_workers_finishing_batches_of_one_run_at_once_count_exactly(store: Store, manifest: Path) -> None:
    """The lost update that left a run `running` at 196 of 200 with two workers, pinned down."""
    run_id = record(store, manifest)
    with store.session() as session:
        ids = [item.id for item in session.query(RunItem).filter_by(run_id=run_id)]

    def finish(session: Session, batch: list[int]) -> None:
        record_outcomes(session, [ItemOutcome(i, error_code="audio_empty", error_message="-") for i in batch])
        refresh_run_counts(session, run_id)

    def second_worker() -> None:
        with store.session() as session:
            finish(session, ids[25:])

    with store.session() as session:  # the first worker's batch, committed when the block ends
        finish(session, ids[:25])
        other = threading.Thread(target=second_worker)
        other.start()
        time.sleep(0.5)  # the second worker counts now, before the first commits, unless it must wait
    other.join(timeout=30)
    summary = run_state(store, run_id)
    assert (summary.failed, summary.status) == (PAIRS, "done")


def test_an_items_error_names_its_files_relative_to_the_data_root(engine: Engine, tmp_path: Path) -> None:
    """A tenant reads these messages over HTTP: where the server keeps its data is not its business."""
    root = tmp_path / "srv" / "audio"
    (root / "set1").mkdir(parents=True)
    (root / "set1" / "q.mp3").write_text("I lost my job today.")
    local = LocalItemScorer(
        engine, ResultCache(Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")), AudioLimits(), roots=[root]
    )
    item = PendingItem(1, "a", str(root / "set1" / "q.mp3"), str(root / "set1" / "q.mp3"))
    [outcome] = local.score_items([item], "scores")
    assert outcome.error_code == "audio_unreadable"
    assert outcome.error_message is not None and "clip 'set1/q.mp3'" in outcome.error_message
    assert str(tmp_path) not in outcome.error_message and "its content is text" in outcome.error_message


def test_two_runners_of_one_shard_share_it_and_score_each_item_once(
    store: Store, bulk_settings: Settings, engine: Engine, small_manifest: Path
) -> None:
    """A resume re-queued a shard that a worker still scores: the second runner takes the items the
    first has not claimed, then waits for the first's batch instead of scoring it again."""
    run_id = record(store, small_manifest)
    [shard] = pending_shards(store, run_id, SMALL)
    holding, release = threading.Event(), threading.Event()

    def hold_first_batch(_pairs: Sequence[AudioPair]) -> None:
        if not holding.is_set():
            holding.set()
            release.wait(timeout=60)

    slow, fast = Wrapped(engine, hold_first_batch), Wrapped(engine)
    reports: dict[str, ShardReport] = {}

    def run(name: str, scorer: Wrapped) -> None:
        local = LocalItemScorer(scorer, ResultCache(store), AudioLimits.from_settings(bulk_settings))  # type: ignore[arg-type]
        context = ShardContext(store, local, bulk_settings.bulk_batch_size, lease_poll_s=0.05)
        reports[name] = process_shard(context, shard)

    first = threading.Thread(target=run, args=("slow", slow))
    second = threading.Thread(target=run, args=("fast", fast))
    first.start()
    try:
        assert holding.wait(timeout=60)
        second.start()
        deadline = time.monotonic() + 120
        while sum(fast.batches) < SMALL - 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert second.is_alive(), "the second runner waits for the first runner's claimed batch"
    finally:
        release.set()
        first.join(timeout=60)
        if second.ident is not None:
            second.join(timeout=60)

    assert (slow.batches, fast.batches) == ([4], [4, 4, 4, 4])
    assert (reports["slow"].done, reports["fast"].done) == (4, SMALL - 4)
    assert item_states(store, run_id) == {"done": SMALL} and result_count(store) == SMALL
    with store.session() as session:
        attempts = set(session.scalars(select(RunItem.attempts).where(RunItem.run_id == run_id)))
    assert attempts == {1}
