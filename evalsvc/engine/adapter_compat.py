"""LoRA adapters trained on transformers 4.x, where each expert is its own set of nn.Linear.

ms-swift (with which the paper trained EmpathyEval) and LLaMA-Factory write adapters for the 4.x
layout (`evalsvc.engine.layouts`): a LoRA per expert projection (`….mlp.experts.7.gate_proj`), the
router `….mlp.gate` as a Linear, module paths under `thinker.` (full model) or `model.layers.`
(thinker alone), and targets given as bare names, as a list of full 4.x module paths
(LLaMA-Factory) or as a regex over them. Such an adapter is converted on load, in memory; the files
stay as they are (and so does the adapter hash in the fingerprint).

peft 0.21 converts the tensors itself (`set_peft_model_state_dict` applies transformers' conversion:
per-expert A factors stacked, B factors block-diagonal, gate and up fused into one LoRA of twice the
rank), but its conversion of the *config* loses what the adapter targeted: a regex or a list of full
names is reduced to bare names, which also match the audio tower, and full 4.x names that no longer
exist drop silently. So the transformers 5 config is built here from what the file holds, which is
what was trained: every module with LoRA tensors, by its transformers 5 name; expert and router LoRAs
as `target_parameters`; the fused gate/up at twice the rank and alpha (the same scale alpha/r, so
the outputs are the 4.x adapter's). The adapter's own config is still checked against the file: a
target that matches no trained module, or a trained module its config does not target, is an error.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from peft import LoraConfig

from evalsvc.engine.layouts import EXPERT_PROJECTIONS, expert_slice, is_router, thinker_name
from evalsvc.errors import ModelLoadError

_LORA_TENSOR = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?:A|B)\.weight$")
_TRANSFORMERS4_MODULE = re.compile(r"^(thinker\.|model\.layers\.|audio_tower\.|visual\.)|\.experts\.\d+\.")
GATE_UP_PATTERN = r".*\.gate_up_proj"
_UNSUPPORTED = {
    "use_dora": "DoRA",
    "use_rslora": "rank-stabilised LoRA",
    "rank_pattern": "per-module ranks (rank_pattern)",
    "alpha_pattern": "per-module alphas (alpha_pattern)",
    "layers_to_transform": "layers_to_transform",
    "modules_to_save": "modules_to_save",
}


def trained_modules(tensor_names: Iterable[str]) -> list[str]:
    """The module paths (model-relative) that an adapter file holds LoRA A/B weights for."""
    modules = set()
    for name in tensor_names:
        match = _LORA_TENSOR.match(name)
        if match is None:
            raise ModelLoadError(
                f"adapter tensor {name!r} is not a LoRA weight (base_model.model.….lora_A/B.weight)"
            )
        modules.add(match["module"])
    return sorted(modules)


def is_transformers4_layout(modules: Iterable[str]) -> bool:
    return any(_TRANSFORMERS4_MODULE.search(module) for module in modules)


def transformers5_config(config: LoraConfig, modules: list[str], num_experts: int) -> LoraConfig:
    """The config that loads a 4.x adapter holding LoRA for `modules` onto the transformers 5 thinker."""
    for option, label in _UNSUPPORTED.items():
        if getattr(config, option, None):
            raise ModelLoadError(f"cannot convert a transformers 4.x adapter that uses {label}")
    _require_config_matches_file(config, modules)
    target_modules: list[str] = []
    target_parameters: set[str] = set()
    experts: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for module in modules:
        expert = expert_slice(module)
        if expert is not None:
            experts[expert.experts][expert.projection].add(expert.index)
            target_parameters.add(expert.fused_parameter)
        elif is_router(module):
            target_parameters.add(f"{thinker_name(module)}.weight")
        else:
            target_modules.append(thinker_name(module))
    _require_complete_experts(experts, num_experts)
    fuses_gate_up = any("gate_proj" in projections for projections in experts.values())
    return LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        bias=config.bias,
        target_modules=target_modules or None,
        target_parameters=sorted(target_parameters) or None,
        rank_pattern={GATE_UP_PATTERN: 2 * config.r} if fuses_gate_up else {},
        alpha_pattern={GATE_UP_PATTERN: 2 * config.lora_alpha} if fuses_gate_up else {},
        inference_mode=True,
    )


def config_targets(config: LoraConfig, module: str) -> bool:
    """Whether `config.target_modules` names `module` (peft's rule: regex full match, else name or suffix)."""
    targets = config.target_modules
    if isinstance(targets, str):
        return re.fullmatch(targets, module) is not None
    return any(module == target or module.endswith(f".{target}") for target in targets or ())


def _require_config_matches_file(config: LoraConfig, modules: list[str]) -> None:
    untargeted = [module for module in modules if not config_targets(config, module)]
    if untargeted:
        raise ModelLoadError(
            f"the adapter holds LoRA weights for {len(untargeted)} modules its config does not target "
            f"(e.g. {', '.join(untargeted[:3])}); the adapter's config and weights do not belong together"
        )
    targets = config.target_modules
    if isinstance(targets, str):
        unused = [] if modules else [targets]
    else:
        unused = sorted(
            target
            for target in targets or ()
            if not any(module == target or module.endswith(f".{target}") for module in modules)
        )
    if unused:
        raise ModelLoadError(f"adapter targets that match no trained module: {', '.join(unused)}")


def _require_complete_experts(experts: dict[str, dict[str, set[int]]], num_experts: int) -> None:
    every = set(range(num_experts))
    for module, projections in sorted(experts.items()):
        present = set(projections)
        if ("gate_proj" in present) != ("up_proj" in present):
            raise ModelLoadError(
                f"{module}: LoRA on only one of gate_proj and up_proj cannot be converted; transformers 5 "
                "fuses the two into gate_up_proj"
            )
        for projection in EXPERT_PROJECTIONS:
            if projection in projections and projections[projection] != every:
                missing = sorted(every - projections[projection])
                raise ModelLoadError(
                    f"{module}.N.{projection}: LoRA for experts {missing[:8]} is missing (the model has "
                    f"{num_experts} experts); every expert must have one to fuse them"
                )
