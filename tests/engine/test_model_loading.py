"""Loading real checkpoints: the hub's layout, profiles, stop tokens, device maps, dtypes.

The hub-layout checkpoint is the tiny model re-saved exactly as the hub stores Qwen3-Omni (full-model
config, `thinker.` keys, per-expert weights, talker and code2wav tensors, Qwen's token ids), in a
directory named like the Instruct checkpoint; it goes through the normal loader and must give the
tiny model's own outputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig, Qwen3OmniMoeThinkerForConditionalGeneration

from evalsvc.engine.artifacts import configured_fingerprint
from evalsvc.engine.engine import Engine
from evalsvc.engine.hub_layout import QWEN_SPECIAL_TOKEN_IDS, save_in_hub_layout
from evalsvc.engine.inputs import AudioPromptProcessor
from evalsvc.engine.placement import (
    Placement,
    parse_placement,
    plan_device_map,
    replica_device,
    replica_gpu_sets,
)
from evalsvc.engine.profiles import resolve_profile, strip_thinking
from evalsvc.engine.tiny import QWEN3_OMNI_30B_A3B, TinyModelPaths, build_thinker_config, build_tokenizer
from evalsvc.engine.types import PairResult
from evalsvc.errors import InvalidParameter, ModelLoadError, ModelNotAJudge
from evalsvc.settings import Settings
from tests.helpers import tone_pair

PAIRS = [tone_pair(1.0, 2.0), tone_pair(2.4, 0.8, 330.0)]
# Measured on the tiny model on CPU over two sets of 24 pairs in batches of 2-24 (bench/bench_invariance.py):
# scores within 2.7e-4, pooled features within 5.5e-4 of the same pair scored alone (bf16 keeps 8 bits of mantissa; a different
# batch shape changes the order of accumulation). The bounds leave about 7x of margin.
BFLOAT16_SCORE_BOUND = 2e-3
BFLOAT16_FEATURE_BOUND = 4e-3


@pytest.fixture(scope="module")
def hub_checkpoint(tiny_paths: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    destination = tmp_path_factory.mktemp("hub") / "Qwen3-Omni-30B-A3B-Instruct"
    save_in_hub_layout(tiny_paths.model, destination)
    return destination


def test_the_hub_layout_is_the_hubs(hub_checkpoint: Path) -> None:
    config = json.loads((hub_checkpoint / "config.json").read_text())
    assert (
        config["model_type"] == "qwen3_omni_moe" and "thinker_config" in config and "talker_config" in config
    )
    assert config["thinker_config"]["audio_token_id"] == 151675
    index = json.loads((hub_checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) >= 2  # sharded, as every large hub checkpoint
    assert "thinker.model.layers.0.mlp.experts.3.gate_proj.weight" in index
    assert "thinker.model.layers.1.mlp.gate.weight" in index
    assert "thinker.audio_tower.conv2d1.weight" in index
    assert any(name.startswith("talker.") for name in index) and any(
        name.startswith("code2wav.") for name in index
    )
    assert all(name.startswith(("thinker.", "talker.", "code2wav.")) for name in index)
    tokenizer = AudioPromptProcessor.from_pretrained(hub_checkpoint, None, n_window=50).tokenizer
    assert tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKEN_IDS)) == list(
        QWEN_SPECIAL_TOKEN_IDS.values()
    )
    assert [QWEN_SPECIAL_TOKEN_IDS[t] for t in ("<|im_start|>", "<|im_end|>")] == [151644, 151645]
    assert [QWEN_SPECIAL_TOKEN_IDS[t] for t in ("<|audio_start|>", "<|audio_end|>")] == [151669, 151670]


def test_the_hub_layout_loads_with_no_missing_or_unexpected_key(hub_checkpoint: Path) -> None:
    _, info = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(
        hub_checkpoint, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


def test_the_hub_layout_gives_the_tiny_models_outputs(tiny_settings: Settings, hub_checkpoint: Path) -> None:
    tiny = Engine.load(tiny_settings.model_copy(update={"heads": None}))
    hub = Engine.load(tiny_settings.model_copy(update={"heads": None, "model": str(hub_checkpoint)}))
    assert hub.fingerprint.profile == "zero-shot"  # told by the directory's name
    assert torch.equal(hub.pooled_features(PAIRS), tiny.pooled_features(PAIRS))
    tiny_texts = [result.assessment for result in tiny.score(PAIRS, "assessment")]
    assert [result.assessment for result in hub.score(PAIRS, "assessment")] == tiny_texts
    assert all(tiny_texts)


def test_every_end_of_turn_token_of_the_checkpoint_stops_generation(
    tiny_settings: Settings, tiny_paths: TinyModelPaths, tmp_path: Path
) -> None:
    """A token the checkpoint's generation config lists as an end token ends the assessment there."""
    settings = tiny_settings.model_copy(update={"heads": None, "adapter": None})
    engine = Engine.load(settings)
    inputs = engine._loaded.processor(PAIRS[:1])
    first = engine._loaded.model.generate(**inputs.as_kwargs(), max_new_tokens=1, do_sample=False)[
        0, -1
    ].item()
    longer = engine.score(PAIRS[:1], "assessment")[0].assessment

    model = Path(shutil.copytree(tiny_paths.model, tmp_path / "model"))
    im_end = engine._loaded.processor.stop_token_ids
    GenerationConfig(eos_token_id=[*im_end, first]).save_pretrained(model)
    stopping = Engine.load(settings.model_copy(update={"model": str(model)}))
    assert first in stopping._loaded.processor.stop_token_ids
    stopped = stopping.score(PAIRS[:1], "assessment")[0].assessment
    assert stopped == engine._loaded.processor.tokenizer.decode([first]).strip()
    assert longer is not None and len(longer) > len(stopped)


def test_the_hub_checkpoints_end_tokens_are_im_end_and_endoftext(hub_checkpoint: Path) -> None:
    config = GenerationConfig.from_pretrained(hub_checkpoint)
    processor = AudioPromptProcessor.from_pretrained(
        hub_checkpoint, None, 50, stop_token_ids=config.eos_token_id
    )
    assert processor.stop_token_ids == [151643, 151645]


def test_the_vision_tower_is_dropped_after_load(engine: Engine) -> None:
    thinker = engine._loaded.core
    assert thinker.visual is None
    assert not any(".visual." in name for name, _ in engine._loaded.model.named_parameters())
    assert engine.score(PAIRS, "scores")[0].scores is not None


def test_the_thinking_models_reasoning_is_kept_out_of_the_assessment(hub_checkpoint: Path) -> None:
    processor = AudioPromptProcessor.from_pretrained(hub_checkpoint, None, 50, strip_thinking=True)
    tokenizer = processor.tokenizer
    answer = tokenizer.encode("The user sounds sad.\nSCORES: NS=4 WA=3 EU=5 ES=2")
    reasoning = [151667, *tokenizer.encode("sad voice, slow"), 151668]
    unfinished = reasoning[:-1] + [processor.pad_token_id] * (len(answer) + 1)  # cut before its answer
    decoded = processor.decode(torch.tensor([reasoning + answer, unfinished]))
    assert decoded == ["The user sounds sad.\nSCORES: NS=4 WA=3 EU=5 ES=2", ""]
    assert strip_thinking("no reasoning at all") == "no reasoning at all"


# --- profiles -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "has_adapter", "profile"),
    [
        ("Qwen/Qwen3-Omni-30B-A3B-Captioner", True, "empathyeval"),
        ("Qwen/Qwen3-Omni-30B-A3B-Instruct", False, "zero-shot"),
        ("Qwen/Qwen3-Omni-30B-A3B-Thinking", False, "zero-shot-thinking"),
        ("Qwen/Qwen3-Omni-30B-A3B-Instruct", True, "zero-shot"),
    ],
)
def test_profiles_are_told_by_hub_id(model: str, has_adapter: bool, profile: str) -> None:
    assert resolve_profile("auto", model, has_adapter=has_adapter).name == profile


def test_profiles_are_told_by_local_directory_name_snapshot_or_profile_file(tmp_path: Path) -> None:
    captioner = tmp_path / "Qwen3-Omni-30B-A3B-Captioner"
    snapshot = tmp_path / "models--Qwen--Qwen3-Omni-30B-A3B-Thinking" / "snapshots" / "0123abcd"
    merged = tmp_path / "judge-v2"
    for directory in (captioner, snapshot, merged):
        directory.mkdir(parents=True)
    (merged / "evalsvc.json").write_text('{"profile": "empathyeval"}')
    assert resolve_profile("auto", str(captioner), has_adapter=True).name == "empathyeval"
    assert resolve_profile("auto", str(snapshot), has_adapter=False).name == "zero-shot-thinking"
    assert resolve_profile("auto", str(merged), has_adapter=False).name == "empathyeval"
    with pytest.raises(ModelLoadError, match="set --profile"):
        resolve_profile("auto", str(tmp_path / "judge-v3"), has_adapter=False)
    assert resolve_profile("zero-shot", str(tmp_path / "judge-v3"), has_adapter=False).name == "zero-shot"


def test_the_captioner_without_its_adapter_is_refused_saying_why_and_what_instead(tmp_path: Path) -> None:
    settings = Settings(model="Qwen/Qwen3-Omni-30B-A3B-Captioner", data_dir=tmp_path)
    with pytest.raises(ModelNotAJudge) as refused:
        configured_fingerprint(settings)  # before any cache lookup or download
    message = refused.value.message
    assert "ignores the judge prompt" in message and "--adapter" in message
    assert "Qwen/Qwen3-Omni-30B-A3B-Instruct" in message
    assert refused.value.code == "model_not_a_judge"


def test_the_profile_sets_the_default_generation_length_and_is_in_the_provenance(tmp_path: Path) -> None:
    instruct = configured_fingerprint(Settings(model="Qwen/Qwen3-Omni-30B-A3B-Instruct", data_dir=tmp_path))
    thinking = configured_fingerprint(Settings(model="Qwen/Qwen3-Omni-30B-A3B-Thinking", data_dir=tmp_path))
    assert instruct.decoding.max_new_tokens == 1024 and thinking.decoding.max_new_tokens == 4096
    assert (
        instruct.to_dict()["profile"] == "zero-shot" and thinking.to_dict()["profile"] == "zero-shot-thinking"
    )
    explicit = Settings(model="Qwen/Qwen3-Omni-30B-A3B-Thinking", max_new_tokens=300, data_dir=tmp_path)
    assert configured_fingerprint(explicit).decoding.max_new_tokens == 300


# --- placement --------------------------------------------------------------------------------------


def test_devices_parse_into_gpu_sets() -> None:
    assert parse_placement("auto", cuda_available=False) == Placement("cpu")
    assert parse_placement("cuda", cuda_available=True) == Placement("cuda", (0,))
    assert parse_placement("cuda:2,3", cuda_available=True).input_device == "cuda:2"
    with pytest.raises(InvalidParameter, match="CUDA is not available"):
        parse_placement("cuda:0,1", cuda_available=False)
    with pytest.raises(InvalidParameter, match="twice"):
        parse_placement("cuda:1,1", cuda_available=True)


def test_serve_gives_each_model_worker_its_own_gpus() -> None:
    """8 GPUs, 2 per replica: 4 disjoint sets; LitServe's `cuda:K` for a worker is set K."""
    sets = replica_gpu_sets(list(range(8)), 2)
    assert sets == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert [replica_device(f"cuda:{slot}", sets) for slot in range(4)] == [
        "cuda:0,1",
        "cuda:2,3",
        "cuda:4,5",
        "cuda:6,7",
    ]
    assert replica_device("cuda:0", replica_gpu_sets([5], 1)) == "cuda:5"
    assert replica_device("cpu", []) == "cpu" and replica_device("mps:0", []) == "mps"
    with pytest.raises(InvalidParameter, match="cannot be split into sets of gpus_per_replica=4"):
        replica_gpu_sets(list(range(6)), 4)


@pytest.fixture(scope="module")
def real_thinker_on_meta() -> torch.nn.Module:
    """The published 30B-A3B thinker's architecture, on the meta device (no memory)."""
    config = build_thinker_config(build_tokenizer(), QWEN3_OMNI_30B_A3B)
    with torch.device("meta"):
        return Qwen3OmniMoeThinkerForConditionalGeneration(config)


def test_the_30b_thinker_is_planned_across_gpus_and_refused_where_it_cannot_fit(
    real_thinker_on_meta: torch.nn.Module,
) -> None:
    gib = 2**30
    parameters = sum(parameter.numel() for parameter in real_thinker_on_meta.parameters())
    assert 31.6e9 < parameters < 31.8e9
    two = plan_device_map(real_thinker_on_meta, {0: 40 * gib, 1: 40 * gib}, torch.bfloat16)
    assert set(two.values()) == {0, 1}
    assert two["model.language_model.embed_tokens"] == 0 and two["lm_head"] == 1
    four = plan_device_map(real_thinker_on_meta, {gpu: 20 * gib for gpu in range(4)}, torch.bfloat16)
    assert set(four.values()) == {0, 1, 2, 3}
    assert plan_device_map(real_thinker_on_meta, {0: 68 * gib}, torch.bfloat16) == {"": 0}
    with pytest.raises(ModelLoadError, match=r"\(59\.1 GiB in bfloat16\) do not fit GPUs 0 within"):
        plan_device_map(real_thinker_on_meta, {0: 40 * gib}, torch.bfloat16)


# --- batch invariance per dtype ----------------------------------------------------------------------


def test_batch_invariance_in_bfloat16(tiny_settings: Settings) -> None:
    """float32 holds to 1e-4 (tests/engine/test_engine.py); bfloat16 to the bounds measured above."""
    engine = Engine.load(tiny_settings.model_copy(update={"dtype": "bfloat16"}))
    pairs = [tone_pair(0.6 + 0.6 * i, 3.9 - 0.55 * i, 190.0 + 41 * i) for i in range(5)]
    alone_features = torch.cat([engine.pooled_features([pair]) for pair in pairs])
    alone_scores = torch.tensor([score_values(engine.score([pair], "scores")[0]) for pair in pairs])
    for batch in (pairs, pairs[::-1]):
        order = [pairs.index(pair) for pair in batch]
        features = engine.pooled_features(batch)
        scores = torch.tensor([score_values(result) for result in engine.score(batch, "scores")])
        assert (features - alone_features[order]).abs().max() <= BFLOAT16_FEATURE_BOUND
        assert (scores - alone_scores[order]).abs().max() <= BFLOAT16_SCORE_BOUND


def score_values(result: PairResult) -> list[float]:
    assert result.scores is not None, result.error
    return [result.scores.NS, result.scores.WA, result.scores.EU, result.scores.ES]
