"""The thinker with a new LoRA adapter of the served shape, ready to train.

It is loaded by the engine's own loader (`load_thinker`: same checkpoint handling, device map, dtype
and attention), the adapter is `lora_config_for` (the shape `--adapter` loads strictly), and the
prompts come from the engine's processor (`evalsvc.training.finetune.tasks`): the three things that
make what is trained what is served. The frozen base stays in its dtype (bfloat16 on CUDA); peft
keeps the LoRA weights in float32, which AdamW updates.

The loss is computed from the last hidden states at the answer's positions only: the language-model
head (vocabulary x hidden) runs on a few hundred positions instead of the whole sequence, whose
float32 logits would cost ~0.9 GB per 1,500-token sample with Qwen's 152k vocabulary. The audio
tower stays in eval mode: it is frozen, and training must hear the features serving computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model
from torch import nn
from torch.nn import functional
from transformers.utils import logging as transformers_logging

from evalsvc.engine.adapter import lora_config_for, quiet_peft
from evalsvc.engine.fingerprint import build_fingerprint
from evalsvc.engine.inputs import AudioPromptProcessor
from evalsvc.engine.loader import load_thinker, resolve_attn_implementation, resolve_dtype
from evalsvc.engine.placement import parse_placement
from evalsvc.engine.types import Decoding, ModelFingerprint
from evalsvc.errors import ModelLoadError
from evalsvc.settings import Settings
from evalsvc.training.finetune.tasks import IGNORE_INDEX, Batch


@dataclass(frozen=True)
class BaseCheckpoint:
    model: str
    revision: str | None


def base_checkpoint(settings: Settings) -> BaseCheckpoint:
    """The checkpoint the adapter is trained on: the configured model, or the built-in tiny one (its
    own adapter is not used: training starts from the base weights)."""
    if settings.uses_tiny_model:
        from evalsvc.engine.tiny import ensure_tiny_model

        return BaseCheckpoint(str(ensure_tiny_model(settings.tiny_model_dir, settings.tiny_seed).model), None)
    return BaseCheckpoint(settings.model, settings.model_revision)


def base_fingerprint(base: BaseCheckpoint) -> ModelFingerprint:
    return build_fingerprint(base.model, base.revision, None, None, Decoding())


class TrainableJudge:
    """The peft-wrapped thinker; `trainable` are the LoRA weights, by parameter name."""

    def __init__(
        self, settings: Settings, base: BaseCheckpoint, *, seed: int, gradient_checkpointing: bool
    ) -> None:
        transformers_logging.disable_progress_bar()
        placement = parse_placement(settings.device, torch.cuda.is_available())
        self.dtype = resolve_dtype(settings.dtype, placement)
        try:
            self.thinker = load_thinker(
                base.model,
                base.revision,
                placement,
                self.dtype,
                attn_implementation=resolve_attn_implementation(settings.attn_implementation, placement),
                max_gpu_memory=settings.max_gpu_memory,
            )
            self.processor = AudioPromptProcessor.from_pretrained(
                base.model,
                base.revision,
                n_window=self.thinker.config.audio_config.n_window,
                stop_token_ids=self.thinker.generation_config.eos_token_id,
            )
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"cannot load model {base.model!r}: {error}") from error
        torch.manual_seed(seed)  # LoRA A factors are drawn at random
        with quiet_peft():
            self.model: PeftModel = get_peft_model(self.thinker, lora_config_for(self.thinker))
        if gradient_checkpointing:
            self.thinker.activation_checkpointing_enable({"use_reentrant": False})
        self.device = self.thinker.get_input_embeddings().weight.device
        self.trainable: dict[str, nn.Parameter] = {
            name: parameter for name, parameter in self.model.named_parameters() if parameter.requires_grad
        }

    @property
    def pad_token_id(self) -> int:
        return self.processor.pad_token_id

    def train(self) -> None:
        self.model.train()
        self.thinker.model.audio_tower.eval()

    def eval(self) -> None:
        self.model.eval()

    def loss_sum(self, batch: Batch) -> tuple[torch.Tensor, int]:
        """Summed cross-entropy of the answer tokens of `batch`, and how many there are."""
        hidden = self.thinker.model(
            **batch.model_inputs(self.device, self.dtype), use_cache=False
        ).last_hidden_state
        targets = batch.labels[:, 1:].to(hidden.device)
        positions = targets != IGNORE_INDEX
        logits = self.thinker.lm_head(hidden[:, :-1][positions]).float()
        return functional.cross_entropy(logits, targets[positions].to(logits.device), reduction="sum"), int(
            positions.sum()
        )

    def weights(self) -> dict[str, torch.Tensor]:
        """A copy of the LoRA weights (on the CPU)."""
        return {name: parameter.detach().to("cpu", copy=True) for name, parameter in self.trainable.items()}

    @torch.no_grad()
    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        if set(weights) != set(self.trainable):
            raise ModelLoadError("the checkpoint's LoRA weights do not match this model's adapter")
        for name, parameter in self.trainable.items():
            parameter.copy_(weights[name])

    def save_adapter(self, directory: Path) -> None:
        """adapter_config.json and adapter_model.safetensors, as `--adapter` loads them."""
        with quiet_peft():
            self.model.save_pretrained(str(directory))
