"""Turn (query, response) audio pairs into the thinker's input tensors.

An audio-only replacement for `Qwen3OmniMoeProcessor`, which insists on image and video
sub-processors (torchvision, unusable with the CPU torch here). It does what that processor does for
audio: Whisper log-mel features, one `<|audio_pad|>` per audio-encoder output frame, left padding.
Unlike it, each clip's features are computed from that clip alone, so padding cannot leak between
pairs of a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import _get_feat_extract_output_lengths

from evalsvc.engine.features import LogMelExtractor
from evalsvc.engine.profiles import strip_thinking
from evalsvc.engine.prompt import render_prompt
from evalsvc.engine.types import AudioPair

AUDIO_PAD = "<|audio_pad|>"
END_OF_TURN = "<|im_end|>"


@dataclass
class ModelInputs:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    input_features: torch.Tensor
    feature_attention_mask: torch.Tensor

    def to(self, device: torch.device, dtype: torch.dtype) -> ModelInputs:
        return ModelInputs(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            input_features=self.input_features.to(device, dtype),
            feature_attention_mask=self.feature_attention_mask.to(device),
        )

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "input_features": self.input_features,
            "feature_attention_mask": self.feature_attention_mask,
        }


class AudioPromptProcessor:
    """Features and token ids for judge prompts; the audio encoder's `n_window` sets token counts.

    `stop_token_ids` end a generation: `<|im_end|>`, the tokenizer's end token and every end token
    of the checkpoint's generation config (Qwen's lists `<|endoftext|>` too), so a model that ends
    its turn any way it was trained to stops there. With `strip_thinking` (the Thinking model) the
    decoded text keeps only the answer after the reasoning.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        features: LogMelExtractor,
        n_window: int,
        *,
        stop_token_ids: int | Sequence[int] | None = None,
        strip_thinking: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.features = features
        self.n_window = n_window
        self.strip_thinking = strip_thinking
        self._prefix, self._middle, self._suffix = _split_prompt()
        configured = [stop_token_ids] if isinstance(stop_token_ids, int) else list(stop_token_ids or [])
        ends = [tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.eos_token_id, *configured]
        self.stop_token_ids: list[int] = sorted({token for token in ends if token is not None})

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        revision: str | None,
        n_window: int,
        *,
        stop_token_ids: int | Sequence[int] | None = None,
        strip_thinking: bool = False,
    ) -> AudioPromptProcessor:
        tokenizer = AutoTokenizer.from_pretrained(str(model), revision=revision)
        return cls(
            tokenizer,
            LogMelExtractor.from_pretrained(model, revision=revision),
            n_window,
            stop_token_ids=stop_token_ids,
            strip_thinking=strip_thinking,
        )

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def __call__(self, pairs: Sequence[AudioPair]) -> ModelInputs:
        clips = [clip.samples for pair in pairs for clip in (pair.query, pair.response)]
        input_features, feature_mask = self.features(clips)
        audio_tokens = self._token_counts(feature_mask)
        texts = [
            self._prompt_with_audio_tokens(audio_tokens[2 * i], audio_tokens[2 * i + 1])
            for i in range(len(pairs))
        ]
        encoded = self.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt")
        return ModelInputs(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            input_features=input_features,
            feature_attention_mask=feature_mask,
        )

    def _token_counts(self, feature_mask: torch.Tensor) -> list[int]:
        return _get_feat_extract_output_lengths(feature_mask.sum(-1), self.n_window).tolist()

    def _prompt_with_audio_tokens(self, query_tokens: int, response_tokens: int) -> str:
        return (
            self._prefix
            + AUDIO_PAD * query_tokens
            + self._middle
            + AUDIO_PAD * response_tokens
            + self._suffix
        )

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        texts = [text.strip() for text in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]
        return [strip_thinking(text) for text in texts] if self.strip_thinking else texts


def _split_prompt() -> tuple[str, str, str]:
    """The prompt around its two `<|audio_pad|>` placeholders (query first, then response)."""
    prefix, middle, suffix = render_prompt().split(AUDIO_PAD)
    return prefix, middle, suffix
