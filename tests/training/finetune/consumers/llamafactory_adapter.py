"""Run inside .venv-consumers: write the LoRA adapter LLaMA-Factory trains for Qwen3-Omni (lora_target all).

    python llamafactory_adapter.py MODEL_DIR OUT_DIR  ->  {"targets": [...]} on stdout

To train the paper's adapter shape, LLaMA-Factory runs Qwen3-Omni on transformers 4.57, where its
patcher swaps in its own `Qwen3OmniMoeThinkerTextSparseMoeBlock`: a router `gate` Linear plus
per-expert gate/up/down Linears, which `lora_target: all` then finds. This virtualenv has
transformers 5.6, whose thinker has the module tree of 4.57 (`model.layers`, `audio_tower`, `visual`,
`lm_head`) but fused experts; the thinker is built here from the tiny checkpoint's config with
LLaMA-Factory's block installed the way its patcher installs it. Everything else is LLaMA-Factory's
and peft's own code: `find_all_linear_modules` and
`patch_target_modules` choose the targets as `lora_target: all` does (audio and vision towers frozen,
its defaults), the LoraConfig is the one its `_setup_lora_tuning` builds, and peft's `save_pretrained`
writes the files. The B factors, zero at initialisation, get random values, as training would give.
"""

from __future__ import annotations

import json
import sys

import torch
from llamafactory.hparams import FinetuningArguments
from llamafactory.model.model_utils.misc import find_all_linear_modules
from llamafactory.model.model_utils.moe import Qwen3OmniMoeThinkerTextSparseMoeBlock
from llamafactory.model.model_utils.visual import patch_target_modules
from peft import LoraConfig, TaskType, get_peft_model
from transformers import Qwen3OmniMoeThinkerConfig
from transformers.initialization import no_init_weights
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe


def main(model_dir: str, out_dir: str) -> None:
    modeling_qwen3_omni_moe.Qwen3OmniMoeThinkerTextSparseMoeBlock = Qwen3OmniMoeThinkerTextSparseMoeBlock
    config = Qwen3OmniMoeThinkerConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    with no_init_weights():  # transformers 5's initialiser expects fused experts; base weights are not saved
        thinker = modeling_qwen3_omni_moe.Qwen3OmniMoeThinkerForConditionalGeneration(config)
    arguments = FinetuningArguments(finetuning_type="lora", lora_target=["all"], lora_rank=8, lora_alpha=32)
    targets = find_all_linear_modules(thinker, arguments.freeze_vision_tower)
    targets = patch_target_modules(thinker, arguments, targets)
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        inference_mode=False,
        r=arguments.lora_rank,
        target_modules=targets,
        lora_alpha=arguments.lora_alpha,
        lora_dropout=arguments.lora_dropout,
        use_rslora=arguments.use_rslora,
        use_dora=arguments.use_dora,
        modules_to_save=arguments.additional_target,
    )
    model = get_peft_model(thinker, lora)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    model.save_pretrained(out_dir)
    print(json.dumps({"targets": sorted(targets)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
