"""The adapter LLaMA-Factory trains for Qwen3-Omni (the 8-GPU path in README) loads in
evalsvc's strict loader and computes what it was trained to compute.

The adapter files are written by LLaMA-Factory's own target selection and peft 0.18.1's writer in
.venv-consumers (tests/training/finetune/consumers/llamafactory_adapter.py says how); the reference is the
tiny base with every LoRA delta of those files added by hand to the weight it adapts, as
tests/engine/test_adapters.py builds it. Without .venv-consumers (`make consumers`) the test skips with the
reason; in CI (CI=true) it fails.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evalsvc.engine.tiny import TINY, TinyModelPaths
from evalsvc.settings import Settings
from tests.engine.test_adapters import PAIRS, load, merged_by_hand
from tests.helpers import REPO_ROOT, running_in_ci

CONSUMER_PYTHON = REPO_ROOT / ".venv-consumers" / "bin" / "python"
WRITER = Path(__file__).parent / "consumers" / "llamafactory_adapter.py"


def test_llamafactorys_qwen3_omni_adapter_loads_strictly_and_computes_its_training(
    tiny_settings: Settings, tiny_paths: TinyModelPaths, tmp_path: Path
) -> None:
    if not CONSUMER_PYTHON.exists():
        reason = ".venv-consumers is missing (make consumers installs LLaMA-Factory)"
        if running_in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    adapter = tmp_path / "llamafactory-adapter"
    done = subprocess.run(
        [str(CONSUMER_PYTHON), str(WRITER), str(tiny_paths.model), str(adapter)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    targets = json.loads(done.stdout.strip().splitlines()[-1])["targets"]
    # lora_target all, towers frozen: attention, router and every expert's three projections, per layer
    per_layer = 4 + 1 + 3 * TINY.experts
    assert len(targets) == TINY.text_layers * per_layer
    assert all(target.startswith("model.layers.") for target in targets)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["task_type"]) == (8, 32, "CAUSAL_LM")

    factors = {
        name.removeprefix("base_model.model."): tensor
        for name, tensor in load_file(str(adapter / "adapter_model.safetensors")).items()
    }
    reference_model = merged_by_hand(tiny_paths, factors, tmp_path / "merged")
    reference = load(tiny_settings, model=str(reference_model), adapter=None).pooled_features(PAIRS)
    base = load(tiny_settings, adapter=None).pooled_features(PAIRS)
    assert not torch.allclose(reference, base, atol=1e-3), "the adapter must change the outputs"
    for merge in (True, False):
        loaded = load(tiny_settings, adapter=adapter, merge_adapter=merge).pooled_features(PAIRS)
        assert torch.allclose(loaded, reference, atol=1e-5), merge
