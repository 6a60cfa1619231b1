"""The engine on the tiny random Qwen3-Omni, through the real transformers/peft code path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

from evalsvc.engine.engine import Engine
from evalsvc.engine.fingerprint import build_fingerprint
from evalsvc.engine.heads import HeadsConfig, ScoreHeads
from evalsvc.engine.tiny import TinyModelPaths, build_tiny_model
from evalsvc.engine.types import Decoding, PairResult
from evalsvc.errors import SCORE_PARSE_CODES, HeadsMismatchError, InvalidParameter, ModelLoadError
from evalsvc.settings import Settings
from tests.helpers import tone_pair

TOLERANCE = 1e-4


def score_values(result: PairResult) -> torch.Tensor:
    assert result.scores is not None, result.error
    return torch.tensor([result.scores.NS, result.scores.WA, result.scores.EU, result.scores.ES])


def test_tiny_checkpoint_round_trips_without_missing_keys(tiny_paths: TinyModelPaths) -> None:
    model, info = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(
        tiny_paths.model, output_loading_info=True
    )
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"]
    assert model.config.text_config.num_experts == 4


def test_same_seed_same_fingerprint_other_seed_differs(tmp_path: Path, tiny_paths: TinyModelPaths) -> None:
    def fingerprint(paths: TinyModelPaths) -> str:
        return build_fingerprint(str(paths.model), None, paths.adapter, paths.heads, Decoding()).key

    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert fingerprint(again) == fingerprint(tiny_paths)
    assert fingerprint(other) != fingerprint(tiny_paths)


def test_scores_are_bounded_and_deterministic(engine: Engine) -> None:
    pair = tone_pair(1.5, 2.5)
    first, second = engine.score([pair], "scores")[0], engine.score([pair], "scores")[0]
    values = score_values(first)
    assert torch.all((values >= 1.0) & (values <= 5.0))
    assert torch.equal(values, score_values(second))
    assert first.scores is not None
    assert first.scores.avg == pytest.approx(float(values.mean()))


def test_batch_invariance(engine: Engine) -> None:
    """A pair's scores do not depend on which (longer or shorter) pairs share its batch."""
    pairs = [tone_pair(1.0, 2.0, 200.0), tone_pair(4.5, 0.7, 330.0), tone_pair(2.2, 3.1, 450.0)]
    alone = [score_values(engine.score([pair], "scores")[0]) for pair in pairs]
    together = [score_values(result) for result in engine.score(pairs, "scores")]
    reversed_batch = [score_values(result) for result in engine.score(pairs[::-1], "scores")][::-1]
    for single, batched, flipped in zip(alone, together, reversed_batch, strict=True):
        assert torch.allclose(single, batched, atol=TOLERANCE, rtol=0)
        assert torch.allclose(single, flipped, atol=TOLERANCE, rtol=0)
    assert not torch.allclose(alone[0], alone[1], atol=TOLERANCE), "different pairs should score differently"


def test_both_mode_heads_use_the_generation_prefill(engine: Engine) -> None:
    pairs = [tone_pair(1.0, 2.0), tone_pair(3.0, 1.2, 300.0)]
    scores_only = engine.score(pairs, "scores")
    both = engine.score(pairs, "both")
    for plain, combined in zip(scores_only, both, strict=True):
        assert torch.allclose(score_values(plain), score_values(combined), atol=TOLERANCE, rtol=0)
        assert isinstance(combined.assessment, str)
        assert plain.assessment is None


def test_greedy_assessment_is_deterministic_and_batch_invariant(engine: Engine) -> None:
    pairs = [tone_pair(1.0, 2.0), tone_pair(2.5, 0.8, 300.0)]
    alone = [engine.score([pair], "assessment")[0].assessment for pair in pairs]
    together = [result.assessment for result in engine.score(pairs, "assessment")]
    assert alone == together
    assert engine.score(pairs[:1], "assessment")[0].assessment == alone[0]
    assert all(result.scores is None for result in engine.score(pairs, "assessment"))


def test_seeded_sampling_is_reproducible(tiny_settings: Settings) -> None:
    def sample(seed: int) -> str | None:
        settings = tiny_settings.model_copy(update={"temperature": 1.0, "seed": seed, "max_new_tokens": 24})
        return Engine.load(settings).score([tone_pair(1.0, 1.0)], "assessment")[0].assessment

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_without_heads_scores_come_from_text_and_never_default(tiny_settings: Settings) -> None:
    """The random tiny model writes no valid score line: scores are null with a parse error code."""
    engine = Engine.load(tiny_settings.model_copy(update={"heads": None}))
    assert not engine.has_heads
    assert engine.fingerprint.heads_sha256 is None
    for mode in ("scores", "both"):
        result = engine.score([tone_pair(1.0, 1.5)], mode)[0]
        assert result.scores is None
        assert result.error is not None and result.error.code in SCORE_PARSE_CODES
    assert engine.score([tone_pair(1.0, 1.5)], "both")[0].assessment is not None


def test_adapter_changes_the_backbone(engine: Engine, tiny_settings: Settings) -> None:
    base = Engine.load(tiny_settings.model_copy(update={"adapter": None, "heads": None}))
    pairs = [tone_pair(1.0, 2.0)]
    assert not torch.allclose(engine.pooled_features(pairs), base.pooled_features(pairs), atol=TOLERANCE)
    assert base.fingerprint.backbone != engine.fingerprint.backbone


def test_heads_fitted_on_another_backbone_are_refused(tiny_settings: Settings) -> None:
    with pytest.raises(HeadsMismatchError, match="refit the heads"):
        Engine.load(tiny_settings.model_copy(update={"adapter": None}))


def test_heads_save_load_round_trip(tmp_path: Path) -> None:
    heads = ScoreHeads(HeadsConfig(hidden_size=8, pooling="last", backbone="abc"))
    heads.save(tmp_path)
    loaded = ScoreHeads.load(tmp_path, expected_backbone="abc")
    pooled = torch.randn(3, 8)
    assert torch.equal(heads(pooled), loaded(pooled))
    assert loaded.config == heads.config
    with pytest.raises(HeadsMismatchError):
        ScoreHeads.load(tmp_path, expected_backbone="other")


def test_heads_hash_changes_the_fingerprint(tmp_path: Path, tiny_paths: TinyModelPaths) -> None:
    heads = ScoreHeads.load(tiny_paths.heads)
    with torch.no_grad():
        heads.linear.bias.add_(0.5)
    heads.save(tmp_path / "refit")
    original = build_fingerprint(
        str(tiny_paths.model), None, tiny_paths.adapter, tiny_paths.heads, Decoding()
    )
    refit = build_fingerprint(str(tiny_paths.model), None, tiny_paths.adapter, tmp_path / "refit", Decoding())
    assert refit.backbone == original.backbone
    assert refit.key != original.key


def test_decoding_parameters_change_the_fingerprint(tiny_paths: TinyModelPaths) -> None:
    def key(decoding: Decoding) -> str:
        return build_fingerprint(str(tiny_paths.model), None, tiny_paths.adapter, None, decoding).key

    assert key(Decoding()) != key(Decoding(max_new_tokens=64))
    assert key(Decoding()) != key(Decoding(temperature=0.7, seed=1))


@pytest.mark.parametrize("broken", ["missing_file", "bad_json", "bad_pooling"])
def test_broken_heads_directory_is_a_load_error(tmp_path: Path, broken: str) -> None:
    ScoreHeads(HeadsConfig(hidden_size=4, pooling="mean", backbone="x")).save(tmp_path)
    config = tmp_path / "heads.json"
    if broken == "missing_file":
        (tmp_path / "heads.safetensors").unlink()
    elif broken == "bad_json":
        config.write_text("{not json")
    else:
        config.write_text(json.dumps(json.loads(config.read_text()) | {"pooling": "max"}))
    with pytest.raises(ModelLoadError):
        ScoreHeads.load(tmp_path)


def test_missing_model_directory_is_a_load_error(tiny_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        Engine.load(tiny_settings.model_copy(update={"model": str(tmp_path / "nowhere")}))


def test_unknown_mode_is_rejected(engine: Engine) -> None:
    with pytest.raises(InvalidParameter, match="mode must be one of"):
        engine.score([tone_pair(1.0, 1.0)], "poetry")  # type: ignore[arg-type]


def test_empty_batch_gives_empty_result(engine: Engine) -> None:
    assert engine.score([], "scores") == []


def test_result_timings_are_reported(engine: Engine) -> None:
    result = engine.score([tone_pair(1.0, 1.0)], "scores")[0]
    assert set(result.timings_ms) == {"features_ms", "model_ms", "total_ms"}
    assert all(value >= 0 for value in result.timings_ms.values())
