"""The two ways Qwen3-Omni's thinker names its weights: the hub's (transformers 4.x) and transformers 5's.

    hub / 4.x: full model, per-expert             transformers 5: thinker alone, fused experts
    thinker.model.layers.N.…                       model.language_model.layers.N.…
    thinker.audio_tower.…                          model.audio_tower.…
    thinker.visual.…                               model.visual.…
    thinker.lm_head                                lm_head
    ….mlp.experts.E.gate_proj / up_proj  [I, H]    ….mlp.experts.gate_up_proj [E, 2I, H]  (gate rows first)
    ….mlp.experts.E.down_proj            [H, I]    ….mlp.experts.down_proj    [E, H, I]
    ….mlp.gate (router, an nn.Linear)              ….mlp.gate (a router module with a `weight`)
    talker.…, code2wav.…                           (not part of the thinker)

transformers converts base weights on load by these rules (its `conversion_mapping`: the `thinker`
prefix removed, the renames of Qwen2.5-Omni's thinker, the qwen2_moe expert fusion). The same facts
are needed where transformers does not apply them: LoRA adapters trained on 4.x
(`evalsvc.engine.adapter_compat`) and the hub-layout test checkpoint (`evalsvc.engine.hub_layout`).
Names here are module or parameter paths; only their prefixes and expert parts are rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXPERT_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
FUSED_GATE_UP = "gate_up_proj"
FUSED_DOWN = "down_proj"

_HUB_PREFIX = "thinker."
_NOT_THINKER = ("talker.", "code2wav.")
_HUB_EXPERT = re.compile(
    r"^(?P<experts>.+\.mlp\.experts)\.(?P<index>\d+)\.(?P<projection>gate_proj|up_proj|down_proj)$"
)
# (hub name prefix without `thinker.`, transformers 5 prefix); the last rule takes any other `model.`.
_RENAMES = (
    ("audio_tower.", "model.audio_tower."),
    ("visual.", "model.visual."),
    ("lm_head", "lm_head"),
)
_V5_SUBMODELS = ("model.language_model.", "model.audio_tower.", "model.visual.")


@dataclass(frozen=True)
class ExpertSlice:
    """One per-expert projection of the hub layout: which fused tensor it belongs to and where."""

    experts: str
    """The transformers 5 path of the layer's experts module, e.g. model.language_model.layers.0.mlp.experts."""
    index: int
    projection: str
    """gate_proj, up_proj or down_proj."""

    @property
    def fused_parameter(self) -> str:
        name = FUSED_DOWN if self.projection == "down_proj" else FUSED_GATE_UP
        return f"{self.experts}.{name}"


def is_thinker_name(hub_name: str) -> bool:
    return not hub_name.startswith(_NOT_THINKER)


def thinker_name(name: str) -> str:
    """The transformers 5 path of a hub / 4.x path (thinker only); a 5.x path comes back unchanged."""
    name = name.removeprefix(_HUB_PREFIX)
    if name.startswith(_V5_SUBMODELS):
        return name
    for old, new in _RENAMES:
        if name.startswith(old):
            return new + name.removeprefix(old)
    if name.startswith("model."):
        return "model.language_model." + name.removeprefix("model.")
    return name


def hub_name(name: str) -> str:
    """The hub / 4.x path (with `thinker.`) of a transformers 5 thinker path; the inverse of `thinker_name`."""
    if name.startswith("model.language_model."):
        return _HUB_PREFIX + "model." + name.removeprefix("model.language_model.")
    for old, new in _RENAMES:
        if name.startswith(new):
            return _HUB_PREFIX + old + name.removeprefix(new)
    return _HUB_PREFIX + name


def expert_slice(module_name: str) -> ExpertSlice | None:
    """The expert projection a hub / 4.x module path names (transformers 5 naming), or None."""
    match = _HUB_EXPERT.match(thinker_name(module_name))
    if match is None:
        return None
    return ExpertSlice(match["experts"], int(match["index"]), match["projection"])


def is_router(module_name: str) -> bool:
    """`….mlp.gate`: the MoE router, an nn.Linear in 4.x and a module holding `weight` in 5.x."""
    return module_name.endswith(".mlp.gate")
