"""The EmpathyEval LoRA adapter: its configuration and how it is applied to the thinker.

peft's `target_modules="all-linear"` fails on Qwen3-Omni (its MoE experts are fused parameters, not
`nn.Linear`), so the adapter names the language model's Linear layers explicitly and reaches the
experts through `target_parameters`, which requires `lora_dropout=0`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from peft import LoraConfig, PeftModel
from torch import nn

from evalsvc.errors import ModelLoadError

LORA_RANK = 8
LORA_ALPHA = 32
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
_LANGUAGE_MODEL_PREFIX = "model.language_model."


def language_model_linear_names(model: nn.Module) -> list[str]:
    """Full names of every nn.Linear inside the thinker's language model (not audio, vision or head)."""
    return [
        name
        for name, module in model.named_modules()
        if name.startswith(_LANGUAGE_MODEL_PREFIX) and isinstance(module, nn.Linear)
    ]


def lora_config_for(model: nn.Module, *, init_lora_weights: bool = True) -> LoraConfig:
    """The paper's adapter shape: rank 8, alpha 32, all linear modules of the language model."""
    return LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        # A full-match pattern rather than a list: peft stores lists as sets, whose order varies between
        # runs, and the adapter file hash is part of the fingerprint.
        target_modules="|".join(re.escape(name) for name in sorted(language_model_linear_names(model))),
        target_parameters=EXPERT_PARAMETERS,
        init_lora_weights=init_lora_weights,
    )


def apply_adapter(model: nn.Module, adapter_dir: Path, *, merge: bool) -> nn.Module:
    """Load a saved adapter onto `model`; merged, the result is a plain model with no LoRA overhead."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter directory {adapter_dir} has no adapter_config.json")
    try:
        with warnings.catch_warnings():
            # peft 0.21 calls a transformers 5.23 API that warns it is deprecated; not actionable here.
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
            peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ModelLoadError(f"cannot load LoRA adapter from {adapter_dir}: {error}") from error
    return peft_model.merge_and_unload() if merge else peft_model
