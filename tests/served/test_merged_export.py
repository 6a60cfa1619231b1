"""`evalsvc export merged`: the layout a server loads, the manifest, and the unmerged judge's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer

from evalsvc.cli import main
from evalsvc.engine.artifacts import configured_fingerprint
from evalsvc.engine.engine import Engine
from evalsvc.engine.hub_writer import INDEX_FILE
from evalsvc.engine.merge_export import export_merged
from evalsvc.engine.merge_manifest import MANIFEST_FILE, MergeManifest
from evalsvc.engine.profiles import PROFILE_FILE
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.errors import InvalidParameter, ModelLoadError
from evalsvc.settings import Settings
from tests.helpers import tone_pair


def test_export_is_the_hub_layout_with_every_file_a_server_needs(
    merged_tiny: tuple[Path, MergeManifest],
) -> None:
    out, manifest = merged_tiny
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe"
    assert config["architectures"] == ["Qwen3OmniMoeForConditionalGeneration"]
    assert config["enable_audio_output"] is False
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "generation_config.json",
    ):
        assert (out / name).is_file(), name
    assert AutoTokenizer.from_pretrained(str(out)).chat_template  # the template a server renders with
    index = json.loads((out / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((out / shard).is_file() for shard in shards)
    names = set(index["weight_map"])
    assert all(name.startswith("thinker.") for name in names)
    assert "thinker.model.layers.0.mlp.experts.3.gate_proj.weight" in names  # per expert, as on the hub
    assert any(name.startswith("thinker.visual.") for name in names)  # written whole
    assert not any("lora" in name for name in names)
    for shard in shards:
        with safe_open(str(out / shard), "pt") as handle:
            assert set(handle.keys()) == {n for n, s in index["weight_map"].items() if s == shard}
    assert json.loads((out / PROFILE_FILE).read_text()) == {"profile": "tiny"}
    assert MergeManifest.read(out) == manifest
    assert AutoConfig.from_pretrained(str(out)).thinker_config.text_config.num_experts == 4


def test_merged_checkpoint_is_the_judge_it_was_merged_from(
    merged_tiny: tuple[Path, MergeManifest], merged_settings: Settings, tiny_settings: Settings
) -> None:
    _, manifest = merged_tiny
    unmerged_settings = tiny_settings.model_copy(update={"merge_adapter": False})
    unmerged = configured_fingerprint(unmerged_settings)
    merged = configured_fingerprint(merged_settings)
    assert merged.backbone == unmerged.backbone and merged.key == unmerged.key
    assert (manifest.base_weights_sha256, manifest.adapter_sha256) == (
        unmerged.weights_sha256,
        unmerged.adapter_sha256,
    )
    assert manifest.prompt_version == unmerged.prompt_version

    engine = Engine.load(merged_settings)  # refuses heads of another backbone: they fit
    reference = Engine.load(unmerged_settings)
    assert engine.fingerprint.key == reference.fingerprint.key
    pairs = [tone_pair(1.0, 2.0), tone_pair(2.5, 0.8, 300.0)]
    for mode in ("assessment", "both"):
        for ours, theirs in zip(engine.score(pairs, mode), reference.score(pairs, mode), strict=True):
            assert ours.assessment == theirs.assessment and ours.assessment
    for ours, theirs in zip(engine.score(pairs, "scores"), reference.score(pairs, "scores"), strict=True):
        assert ours.scores is not None and theirs.scores is not None
        assert torch.allclose(
            torch.tensor(list(ours.scores.to_dict().values())),
            torch.tensor(list(theirs.scores.to_dict().values())),
            atol=1e-4,
            rtol=0,
        )


def test_export_refuses_what_it_cannot_write(
    tiny_settings: Settings, tiny_paths: TinyModelPaths, tmp_path: Path
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(InvalidParameter, match="not an empty directory"):
        export_merged(tiny_settings, taken)
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(InvalidParameter, match="does not exist"):
        export_merged(tiny_settings.model_copy(update={"adapter": tmp_path / "nowhere"}), tmp_path / "a")
    with pytest.raises(InvalidParameter, match=r"adapter_config\.json"):
        export_merged(tiny_settings.model_copy(update={"adapter": tiny_paths.heads}), tmp_path / "b")
    with pytest.raises(InvalidParameter, match="--adapter"):
        export_merged(tiny_settings.model_copy(update={"adapter": None}), tmp_path / "c")
    assert not any(path.name in ("a", "b", "c") for path in tmp_path.iterdir())


def test_a_merged_checkpoint_takes_no_adapter_and_no_edits(
    merged_tiny: tuple[Path, MergeManifest],
    merged_settings: Settings,
    tiny_paths: TinyModelPaths,
    tmp_path: Path,
) -> None:
    with pytest.raises(ModelLoadError, match="already in its weights"):
        configured_fingerprint(merged_settings.model_copy(update={"adapter": tiny_paths.adapter}))
    with pytest.raises(ModelLoadError, match="already in its weights"):
        export_merged(merged_settings.model_copy(update={"adapter": tiny_paths.adapter}), tmp_path / "twice")
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in merged_tiny[0].iterdir():
        (edited / path.name).write_bytes(path.read_bytes())
    config = json.loads((edited / "config.json").read_text())
    config["thinker_config"]["text_config"]["rms_norm_eps"] = 0.5
    (edited / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="not the ones its"):
        configured_fingerprint(merged_settings.model_copy(update={"model": str(edited)}))


def test_cli_exports_and_refuses_with_exit_codes(
    tiny_paths: TinyModelPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["export", "merged", "--model", str(tiny_paths.model), "--adapter", str(tiny_paths.adapter)]
    out = tmp_path / "merged"
    assert main([*base, "--out", str(out), "--max-shard-size", "300KB"]) == 2  # not a size it knows
    assert "--max-shard-size" in capsys.readouterr().err
    assert main([*base, "--out", str(out), "--max-shard-size", "1MB"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["manifest_sha256"] == MergeManifest.read(out).sha256  # type: ignore[union-attr]
    assert (out / MANIFEST_FILE).is_file()
    assert main([*base, "--out", str(out)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
