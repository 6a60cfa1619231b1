"""The scoring service: cache hits and misses, what is stored, fingerprints, tenants (tiny model)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from evalsvc.engine.artifacts import configured_fingerprint
from evalsvc.engine.engine import Engine
from evalsvc.engine.types import AudioPair, ModelFingerprint, PairResult, Scores
from evalsvc.errors import SCORE_LINE_MISSING, ItemError
from evalsvc.scoring import LazyEngine, ResultCache, score_pairs
from evalsvc.settings import Mode, Settings
from evalsvc.store import ModelVersion, Result, Store, create_tenant, get_result
from tests.helpers import tone_pair
from tests.store.factories import make_fingerprint


class RecordingScorer:
    """Wraps a scorer: records the size of every batch it is asked for; may pose as another model."""

    def __init__(self, inner: Engine | None = None, *, fingerprint: ModelFingerprint | None = None,
                 results: Sequence[PairResult] = ()) -> None:  # fmt: skip
        self.inner = inner
        self._fingerprint = fingerprint
        self._results = list(results)
        self.batches: list[int] = []

    @property
    def fingerprint(self) -> ModelFingerprint:
        if self._fingerprint is not None:
            return self._fingerprint
        assert self.inner is not None
        return self.inner.fingerprint

    def score(self, pairs: Sequence[AudioPair], mode: Mode) -> list[PairResult]:
        self.batches.append(len(pairs))
        if self.inner is None:
            return self._results[: len(pairs)]
        return self.inner.score(pairs, mode)


def rows(store: Store, model: type) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_second_call_is_answered_from_the_store(engine: Engine, store: Store) -> None:
    scorer, cache = RecordingScorer(engine), ResultCache(store)
    pairs = [tone_pair(1.0, 1.5), tone_pair(1.2, 0.8, frequency=330.0)]

    first = score_pairs(scorer, pairs, "scores", cache=cache)
    second = score_pairs(scorer, pairs, "scores", cache=ResultCache(store))  # a new process, say

    assert [answer.cached for answer in first] == [False, False]
    assert [answer.cached for answer in second] == [True, True]
    assert [answer.id for answer in second] == [answer.id for answer in first]
    assert all(answer.id is not None for answer in first)
    assert [answer.result.scores for answer in second] == [answer.result.scores for answer in first]
    assert scorer.batches == [2]  # one engine batch, for the first call only
    assert rows(store, Result) == 2 and rows(store, ModelVersion) == 1


def test_only_the_misses_reach_the_engine_in_one_batch(engine: Engine, store: Store) -> None:
    scorer, cache = RecordingScorer(engine), ResultCache(store)
    known, new_a, new_b = tone_pair(1.0, 1.0), tone_pair(0.7, 0.9, 440.0), tone_pair(0.8, 0.6, 550.0)
    [stored] = score_pairs(scorer, [known], "scores", cache=cache)

    answers = score_pairs(scorer, [new_a, known, new_b], "scores", cache=cache)

    assert [answer.cached for answer in answers] == [False, True, False]
    assert answers[1].id == stored.id  # answers come back in the order of the pairs
    assert scorer.batches == [1, 2]


@pytest.mark.parametrize(
    "change",
    [
        {"heads_sha256": "0" * 64},
        {"prompt_version": "empathyeval-v2"},
        {"adapter_sha256": None},
        {"profile": "zero-shot"},
    ],
    ids=["new-heads", "new-prompt", "no-adapter", "other-profile"],
)
def test_a_changed_fingerprint_scores_again(engine: Engine, store: Store, change: dict[str, object]) -> None:
    cache, pair = ResultCache(store), tone_pair(1.0, 1.0)
    [original] = score_pairs(RecordingScorer(engine), [pair], "scores", cache=cache)

    changed = RecordingScorer(engine, fingerprint=replace(engine.fingerprint, **change))  # type: ignore[arg-type]
    [again] = score_pairs(changed, [pair], "scores", cache=cache)

    assert not again.cached and again.id != original.id
    assert changed.batches == [1]
    assert rows(store, ModelVersion) == 2


def test_another_mode_is_another_result(engine: Engine, store: Store) -> None:
    cache, pair = ResultCache(store), tone_pair(1.0, 1.0)
    [scores] = score_pairs(engine, [pair], "scores", cache=cache)
    [both] = score_pairs(engine, [pair], "both", cache=cache)
    assert not both.cached and both.id != scores.id
    assert both.result.assessment is not None


def test_unparseable_answers_are_kept_but_other_errors_are_not(store: Store) -> None:
    fingerprint = make_fingerprint()
    parse_failure = PairResult(None, "no score line", ItemError(SCORE_LINE_MISSING, "no SCORES line"))
    transient = PairResult(None, None, ItemError("internal_error", "CUDA hiccup"))
    scorer = RecordingScorer(fingerprint=fingerprint, results=[parse_failure, transient])
    cache = ResultCache(store)
    pairs = [tone_pair(1.0, 1.0), tone_pair(2.0, 2.0)]

    first = score_pairs(scorer, pairs, "both", cache=cache)
    second = score_pairs(scorer, pairs[:1], "both", cache=cache)

    assert first[0].id is not None and first[1].id is None
    assert second[0].cached
    assert second[0].result.error == parse_failure.error
    assert second[0].result.assessment == "no score line"
    assert rows(store, Result) == 1


def test_results_become_visible_to_each_tenant_that_receives_them(engine: Engine, store: Store) -> None:
    with store.session() as session:
        alice, bob = create_tenant(session, "alice").id, create_tenant(session, "bob").id
    cache, pair = ResultCache(store), tone_pair(1.0, 1.0)

    [for_alice] = score_pairs(engine, [pair], "scores", cache=cache, tenant_id=alice)
    assert for_alice.id == 1 and not for_alice.cached  # alice's first result
    with store.session() as session:
        assert get_result(session, for_alice.id, tenant_id=alice) is not None
        assert get_result(session, for_alice.id, tenant_id=bob) is None

    # Bob's pair is answered from the store (the model does not run again), but nothing in his
    # answer says that someone else submitted it first: not `cached`, and his own first number.
    [for_bob] = score_pairs(engine, [pair], "scores", cache=cache, tenant_id=bob)
    assert not for_bob.cached and for_bob.id == 1
    assert for_bob.result.scores == for_alice.result.scores
    assert rows(store, Result) == 1
    with store.session() as session:
        assert get_result(session, 1, tenant_id=bob) is not None

    [again] = score_pairs(engine, [pair], "scores", cache=cache, tenant_id=bob)
    assert again.cached and again.id == 1  # now bob has had it before


def test_without_a_cache_nothing_is_looked_up_or_kept(engine: Engine) -> None:
    [answer] = score_pairs(engine, [tone_pair(1.0, 1.0)], "scores")
    assert answer.id is None and not answer.cached and answer.result.scores is not None


def test_the_fingerprint_from_the_files_is_the_loaded_engines(
    engine: Engine, tiny_settings: Settings
) -> None:
    assert configured_fingerprint(tiny_settings) == engine.fingerprint
    assert configured_fingerprint(tiny_settings).key == engine.fingerprint.key


def test_a_lazy_engine_loads_only_to_score(tiny_settings: Settings, engine: Engine) -> None:
    lazy = LazyEngine(tiny_settings)
    assert lazy.fingerprint.key == engine.fingerprint.key
    assert not lazy.loaded
    [result] = lazy.score([tone_pair(1.0, 1.0)], "scores")
    assert lazy.loaded and isinstance(result.scores, Scores)
