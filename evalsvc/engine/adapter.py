"""The EmpathyEval LoRA adapter: its shape, and loading one strictly.

The paper trains rank 8, alpha 32 on "all linear modules" of the language model (ms-swift, on
transformers 4.x). On transformers 5 that is:

- the attention projections q/k/v/o, the only nn.Linear left in the language model, through
  `target_modules` as bare names with every module outside the language model excluded: peft turns
  a full-name pattern into bare names (q_proj|k_proj|...), which alone would also put LoRA on the
  audio tower's attention;
- the MoE experts, now fused parameters, through `target_parameters` (`mlp.experts.gate_up_proj`,
  `mlp.experts.down_proj`; this needs lora_dropout 0);
- the router (`mlp.gate.weight`): an nn.Linear on 4.x, so "all linear modules" (ms-swift's
  all-linear) trained it, and an adapter without it could not hold what the paper's does;
- the fused gate/up at rank 16, alpha 64: on 4.x gate_proj and up_proj are two linears with a rank-8
  LoRA each. Their two LoRAs are exactly one of rank 16 on the fused weight (A factors stacked, B
  block-diagonal) with the same scale alpha/r = 4; at rank 8 gate and up would share one factor, half
  the capacity, and a 4.x adapter could not be expressed in it.

Not the audio tower (frozen in the paper's recipe, and LLaMA-Factory's default), not the vision tower,
the embeddings or lm_head.

Loading is strict. peft only warns when adapter tensors do not load, and the engine would then score
with a partly loaded LoRA under a fingerprint that records the adapter: a wrong score with a
correct-looking provenance. Here any tensor of the file that does not load, any LoRA weight the
config creates that the file does not fill, and any target that matches nothing is a ModelLoadError
naming them. Adapters written for the transformers 4.x layout are converted on load
(`evalsvc.engine.adapter_compat`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, set_peft_model_state_dict
from peft.utils import load_peft_weights
from torch import nn

from evalsvc.engine.adapter_compat import (
    GATE_UP_PATTERN,
    is_transformers4_layout,
    trained_modules,
    transformers5_config,
)
from evalsvc.errors import ModelLoadError

LORA_RANK = 8
LORA_ALPHA = 32
LANGUAGE_MODEL_PREFIX = "model.language_model."
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
ROUTER_PARAMETER = "mlp.gate.weight"
# Everything outside the language model: the audio and vision towers, lm_head.
OUTSIDE_LANGUAGE_MODEL = r"(?!model\.language_model\.).*"
_SHOWN = 5


def language_model_linear_names(model: nn.Module) -> list[str]:
    """Bare names of the nn.Linear modules inside the thinker's language model (q_proj, ...)."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if name.startswith(LANGUAGE_MODEL_PREFIX) and isinstance(module, nn.Linear)
        }
    )


def lora_config_for(model: nn.Module, *, init_lora_weights: bool = True) -> LoraConfig:
    """The paper's adapter shape on transformers 5 (see the module docstring for each choice)."""
    return LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=language_model_linear_names(model),
        exclude_modules=OUTSIDE_LANGUAGE_MODEL,
        target_parameters=[*EXPERT_PARAMETERS, ROUTER_PARAMETER],
        rank_pattern={GATE_UP_PATTERN: 2 * LORA_RANK},
        alpha_pattern={GATE_UP_PATTERN: 2 * LORA_ALPHA},
        init_lora_weights=init_lora_weights,
    )


def apply_adapter(model: nn.Module, adapter_dir: Path, *, merge: bool) -> nn.Module:
    """Load the adapter in `adapter_dir` onto `model`, every tensor or none; merged, the result is a
    plain model with no LoRA overhead."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter directory {adapter_dir} has no adapter_config.json")
    try:
        config = LoraConfig.from_pretrained(str(adapter_dir))
        tensors = load_peft_weights(str(adapter_dir), device="cpu")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"cannot read LoRA adapter from {adapter_dir}: {error}") from error
    modules = trained_modules(tensors)
    if is_transformers4_layout(modules):
        config = transformers5_config(config, modules, model.config.text_config.num_experts)
    config.inference_mode = True
    try:
        with quiet_peft():
            peft_model = PeftModel(model, config, low_cpu_mem_usage=True)
            _require_targets_matched(peft_model, config)
            result = set_peft_model_state_dict(peft_model, tensors, low_cpu_mem_usage=True)
    except (ValueError, KeyError, RuntimeError) as error:
        raise ModelLoadError(f"cannot load LoRA adapter from {adapter_dir}: {error}") from error
    _require_every_tensor_loaded(peft_model, result.unexpected_keys, adapter_dir)
    return peft_model.merge_and_unload() if merge else peft_model


def lora_parameters(model: nn.Module) -> dict[str, torch.Size]:
    """Every LoRA weight of a peft model, by name: what a test lists to pin the adapter's shape."""
    return {name: parameter.shape for name, parameter in model.named_parameters() if ".lora_" in name}


def _require_targets_matched(peft_model: PeftModel, config: LoraConfig) -> None:
    tuner = peft_model.base_model
    modules = list(tuner.targeted_module_names)
    parameters = list(tuner.targeted_parameter_names)
    unmatched: list[str] = []
    targets = config.target_modules
    if isinstance(targets, str):
        unmatched += [] if modules else [targets]
    else:
        unmatched += [t for t in targets or () if not any(m == t or m.endswith(f".{t}") for m in modules)]
    unmatched += [
        t
        for t in config.target_parameters or ()
        if not any(p == t or p.endswith(f".{t}") for p in parameters)
    ]
    if unmatched:
        raise ModelLoadError(
            f"adapter targets that match nothing in the model: {', '.join(sorted(unmatched))}"
        )


def _require_every_tensor_loaded(peft_model: PeftModel, unexpected: list[str], adapter_dir: Path) -> None:
    """Tensors that went nowhere, and LoRA weights that received none, are both refused."""
    unfilled = sorted(
        name for name, parameter in peft_model.named_parameters() if ".lora_" in name and parameter.is_meta
    )
    problems = []
    if unexpected:
        problems.append(
            f"{len(unexpected)} adapter tensors match no LoRA weight of the model "
            f"({', '.join(sorted(unexpected)[:_SHOWN])}{', ...' if len(unexpected) > _SHOWN else ''})"
        )
    if unfilled:
        problems.append(
            f"{len(unfilled)} LoRA weights its config creates are missing from the file "
            f"({', '.join(unfilled[:_SHOWN])}{', ...' if len(unfilled) > _SHOWN else ''})"
        )
    if problems:
        raise ModelLoadError(f"adapter {adapter_dir} does not fit this model: {'; '.join(problems)}")


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft's warnings here are either checked by this module itself or not actionable."""
    with warnings.catch_warnings():
        # peft 0.21 calls a transformers 5.23 API that warns it is deprecated.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        warnings.filterwarnings("ignore", message="Found missing adapter keys")
        # peft 0.21 checks rank/alpha patterns against targeted modules only, not parameters; the
        # gate_up pattern does apply (the adapter shape test pins its rank).
        warnings.filterwarnings("ignore", message="The following (rank|alpha)_pattern keys did not match")
        yield
