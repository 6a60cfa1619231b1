"""The EmpathyEval adapter: its exact shape, strict loading, and adapters in the transformers 4.x layout.

A 4.x adapter is built here with a LoRA per expert projection, named as ms-swift (full model,
`thinker.` prefix, regex targets), LLaMA-Factory (thinker alone, a list of full module paths, or its
older negative-lookahead regex) or a plain bare-name list write them. What it must compute is what it
computed where it was trained: each 4.x linear W becomes W + (alpha / r) B A. The reference model here
is the tiny base with exactly those deltas added, by hand, to the fused transformers 5 weights
(gate_proj rows first in gate_up_proj, as transformers fuses them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

from evalsvc.engine.adapter import lora_parameters
from evalsvc.engine.engine import Engine
from evalsvc.engine.tiny import TINY, TinyModelPaths
from evalsvc.errors import ModelLoadError
from evalsvc.settings import Settings
from tests.helpers import tone_pair

RANK, ALPHA = 8, 32
PAIRS = [tone_pair(1.0, 2.0), tone_pair(2.3, 0.9, 310.0)]
ADAPTER_FILE = "adapter_model.safetensors"


def load(settings: Settings, **changes: object) -> Engine:
    return Engine.load(settings.model_copy(update={"heads": None, **changes}))


def test_the_adapter_carries_lora_exactly_on_the_language_models_linears_experts_and_router(
    tiny_settings: Settings,
) -> None:
    """Attention q/k/v/o at rank 8, the fused gate/up at rank 16, down and router at rank 8, per
    layer; nothing on the audio or vision tower, the embeddings or lm_head."""
    engine = load(tiny_settings, merge_adapter=False)
    hidden, inter, experts = TINY.text_hidden, TINY.moe_intermediate, TINY.experts
    q_out, kv_out = TINY.attention_heads * TINY.head_dim, TINY.kv_heads * TINY.head_dim
    expected: dict[str, tuple[int, ...]] = {}
    for layer in range(TINY.text_layers):
        prefix = f"base_model.model.model.language_model.layers.{layer}."
        for name, (inputs, outputs) in {
            "self_attn.q_proj": (hidden, q_out),
            "self_attn.k_proj": (hidden, kv_out),
            "self_attn.v_proj": (hidden, kv_out),
            "self_attn.o_proj": (q_out, hidden),
        }.items():
            expected[f"{prefix}{name}.lora_A.default.weight"] = (RANK, inputs)
            expected[f"{prefix}{name}.lora_B.default.weight"] = (outputs, RANK)
        # gate_up_proj (inner wrapper): rank 16 per expert; down_proj (outer): rank 8 per expert
        expected[f"{prefix}mlp.experts.base_layer.lora_A.default.weight"] = (2 * RANK * experts, hidden)
        expected[f"{prefix}mlp.experts.base_layer.lora_B.default.weight"] = (2 * inter, 2 * RANK * experts)
        expected[f"{prefix}mlp.experts.lora_A.default.weight"] = (RANK * experts, inter)
        expected[f"{prefix}mlp.experts.lora_B.default.weight"] = (hidden, RANK * experts)
        expected[f"{prefix}mlp.gate.lora_A.default.weight"] = (RANK, hidden)
        expected[f"{prefix}mlp.gate.lora_B.default.weight"] = (experts, RANK)
    found = {name: tuple(shape) for name, shape in lora_parameters(engine._loaded.model).items()}
    assert found == expected
    scaling = {
        name: module.scaling["default"]
        for name, module in engine._loaded.model.named_modules()
        if isinstance(module, LoraLayer)
    }
    assert set(scaling.values()) == {ALPHA / RANK}  # rank 16 with alpha 64 keeps gate and up at 4


def test_merged_is_the_default_and_agrees_with_unmerged(tiny_settings: Settings) -> None:
    assert Settings().merge_adapter is True
    merged, unmerged = load(tiny_settings), load(tiny_settings, merge_adapter=False)
    assert not lora_parameters(merged._loaded.model)
    assert torch.allclose(merged.pooled_features(PAIRS), unmerged.pooled_features(PAIRS), atol=1e-5)


@pytest.fixture
def adapter_copy(tiny_paths: TinyModelPaths, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_paths.adapter, tmp_path / "adapter"))


def edit_tensors(adapter: Path, edit: object) -> None:
    tensors = load_file(str(adapter / ADAPTER_FILE))
    edit(tensors)  # type: ignore[operator]
    save_file(tensors, str(adapter / ADAPTER_FILE))


def edit_config(adapter: Path, **changes: object) -> None:
    path = adapter / "adapter_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_a_tensor_that_loads_nowhere_is_refused_by_name(tiny_settings: Settings, adapter_copy: Path) -> None:
    stray = "base_model.model.model.language_model.layers.0.mlp.shared_expert.up_proj.lora_A.weight"
    edit_tensors(adapter_copy, lambda tensors: tensors.__setitem__(stray, torch.zeros(RANK, 4)))
    with pytest.raises(
        ModelLoadError, match=r"1 adapter tensors match no LoRA weight .*shared_expert\.up_proj"
    ):
        load(tiny_settings, adapter=adapter_copy)


def test_a_lora_weight_missing_from_the_file_is_refused_by_name(
    tiny_settings: Settings, adapter_copy: Path
) -> None:
    missing = "base_model.model.model.language_model.layers.1.mlp.experts.lora_B.weight"
    edit_tensors(adapter_copy, lambda tensors: tensors.pop(missing))
    with pytest.raises(ModelLoadError, match=r"missing from the file \(.*layers\.1\.mlp\.experts\.lora_B"):
        load(tiny_settings, adapter=adapter_copy)


@pytest.mark.parametrize(
    ("field", "target"),
    [("target_modules", "c_attn"), ("target_parameters", "mlp.experts.gate_proj")],
)
def test_a_target_that_matches_nothing_is_refused_by_name(
    tiny_settings: Settings, adapter_copy: Path, field: str, target: str
) -> None:
    config = json.loads((adapter_copy / "adapter_config.json").read_text())
    edit_config(adapter_copy, **{field: [*config[field], target]})
    with pytest.raises(ModelLoadError, match=f"match nothing in the model: {target}"):
        load(tiny_settings, adapter=adapter_copy)


# --- adapters trained on the transformers 4.x layout ---------------------------------------------


def per_expert_lora(seed: int) -> dict[str, torch.Tensor]:
    """Random rank-8 LoRA factors for every 4.x linear of the tiny language model, by 4.x module path
    relative to the thinker (`model.layers.L.…`)."""
    generator = torch.Generator().manual_seed(seed)
    hidden, inter = TINY.text_hidden, TINY.moe_intermediate
    q_out, kv_out = TINY.attention_heads * TINY.head_dim, TINY.kv_heads * TINY.head_dim
    shapes: dict[str, tuple[int, int]] = {}
    for layer in range(TINY.text_layers):
        prefix = f"model.layers.{layer}."
        shapes |= {
            f"{prefix}self_attn.q_proj": (hidden, q_out),
            f"{prefix}self_attn.k_proj": (hidden, kv_out),
            f"{prefix}self_attn.v_proj": (hidden, kv_out),
            f"{prefix}self_attn.o_proj": (q_out, hidden),
            f"{prefix}mlp.gate": (hidden, TINY.experts),
        }
        for expert in range(TINY.experts):
            shapes |= {
                f"{prefix}mlp.experts.{expert}.gate_proj": (hidden, inter),
                f"{prefix}mlp.experts.{expert}.up_proj": (hidden, inter),
                f"{prefix}mlp.experts.{expert}.down_proj": (inter, hidden),
            }
    factors = {}
    for module, (inputs, outputs) in shapes.items():
        factors[f"{module}.lora_A.weight"] = torch.randn(RANK, inputs, generator=generator) / inputs**0.5
        factors[f"{module}.lora_B.weight"] = torch.randn(outputs, RANK, generator=generator) * 0.05
    return factors


FORMATS: dict[str, tuple[str, object]] = {
    # (module path prefix, target_modules)
    "ms-swift full model, regex": (
        "thinker.",
        r"^thinker\.model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.gate|mlp\.experts\.\d+\.(gate|up|down)_proj)$",
    ),
    "LLaMA-Factory, full module paths": ("", None),  # filled in from the tensors
    "LLaMA-Factory, negative-lookahead regex": (
        "",
        r"^(?!.*(?:audio_tower|visual)).*(?:q_proj|k_proj|v_proj|o_proj|gate|gate_proj|up_proj|down_proj).*",
    ),
    "bare names": ("", ["q_proj", "k_proj", "v_proj", "o_proj", "gate", "gate_proj", "up_proj", "down_proj"]),
}


def write_transformers4_adapter(directory: Path, factors: dict[str, torch.Tensor], layout: str) -> Path:
    prefix, targets = FORMATS[layout]
    if targets is None:
        targets = sorted({name.rsplit(".lora_", 1)[0] for name in factors})
    directory.mkdir()
    save_file(
        {f"base_model.model.{prefix}{name}": tensor for name, tensor in factors.items()},
        str(directory / ADAPTER_FILE),
    )
    config = {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "lora_dropout": 0.05, "bias": "none"}
    (directory / "adapter_config.json").write_text(json.dumps(config | {"target_modules": targets}))
    return directory


def merged_by_hand(tiny_paths: TinyModelPaths, factors: dict[str, torch.Tensor], directory: Path) -> Path:
    """The tiny base with every 4.x LoRA delta added to the weight it adapts, saved as a checkpoint."""
    model = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(tiny_paths.model)
    weights = dict(model.named_parameters())
    inter = TINY.moe_intermediate
    with torch.no_grad():
        for name in {key.rsplit(".lora_", 1)[0] for key in factors}:
            delta = (ALPHA / RANK) * factors[f"{name}.lora_B.weight"] @ factors[f"{name}.lora_A.weight"]
            layer_path = name.replace("model.layers.", "model.language_model.layers.", 1)
            parts = layer_path.split(".")
            if "experts" in parts:
                experts_path, expert, projection = ".".join(parts[:-2]), int(parts[-2]), parts[-1]
                if projection == "down_proj":
                    weights[f"{experts_path}.down_proj"][expert] += delta
                else:
                    rows = slice(0, inter) if projection == "gate_proj" else slice(inter, 2 * inter)
                    weights[f"{experts_path}.gate_up_proj"][expert, rows] += delta
            else:
                weights[f"{layer_path}.weight"] += delta
    shutil.copytree(tiny_paths.model, directory)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def per_expert(tmp_path_factory: pytest.TempPathFactory, tiny_paths: TinyModelPaths) -> tuple[dict, Path]:
    factors = per_expert_lora(seed=11)
    return factors, merged_by_hand(tiny_paths, factors, tmp_path_factory.mktemp("merged") / "model")


@pytest.mark.parametrize("layout", FORMATS)
def test_transformers4_per_expert_adapters_give_the_outputs_they_were_trained_for(
    tiny_settings: Settings, per_expert: tuple[dict, Path], tmp_path: Path, layout: str
) -> None:
    factors, reference_model = per_expert
    adapter = write_transformers4_adapter(tmp_path / "adapter", factors, layout)
    reference = load(tiny_settings, model=str(reference_model), adapter=None).pooled_features(PAIRS)
    base = load(tiny_settings, adapter=None).pooled_features(PAIRS)
    assert not torch.allclose(reference, base, atol=1e-3), "the adapter must change the outputs"
    for merge in (True, False):
        converted = load(tiny_settings, adapter=adapter, merge_adapter=merge).pooled_features(PAIRS)
        assert torch.allclose(converted, reference, atol=1e-5), (layout, merge)


def test_a_transformers4_target_that_matches_no_trained_module_is_refused(
    tiny_settings: Settings, tmp_path: Path
) -> None:
    factors = per_expert_lora(seed=3)
    adapter = write_transformers4_adapter(tmp_path / "adapter", factors, "LLaMA-Factory, full module paths")
    edit_config(
        adapter,
        target_modules=[
            *sorted({n.rsplit(".lora_", 1)[0] for n in factors}),
            "model.layers.0.self_attn.c_attn",
        ],
    )
    with pytest.raises(ModelLoadError, match=r"match no trained module: model\.layers\.0\.self_attn\.c_attn"):
        load(tiny_settings, adapter=adapter)


def test_a_transformers4_adapter_missing_an_expert_is_refused(
    tiny_settings: Settings, tmp_path: Path
) -> None:
    factors = {name: t for name, t in per_expert_lora(seed=4).items() if ".experts.3.down_proj." not in name}
    adapter = write_transformers4_adapter(tmp_path / "adapter", factors, "bare names")
    with pytest.raises(ModelLoadError, match=r"down_proj: LoRA for experts \[3\] is missing"):
        load(tiny_settings, adapter=adapter)
