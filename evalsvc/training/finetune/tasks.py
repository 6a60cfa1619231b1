"""The three fine-tuning tasks: what the model hears and what it must answer, as token ids.

    ser         one clip            -> its emotion label ("sad")
    caption     one clip            -> a caption of the speaker's emotion and voice
    assessment  query + response    -> the descriptive assessment ending in the SCORES line

`assessment` is the judge itself: its prompt ids and audio features come from the engine's own
`AudioPromptProcessor` (the judge prompt of `evalsvc.engine.prompt`), the object that scoring calls,
so what is trained is token for token what is served. `ser` and `caption` are the paper's earlier
stages; their prompts are a user turn with the clip and a one-line instruction in the same chat
format, versioned here (`TASK_PROMPT_VERSION`, recorded in training.json) because they shape the
adapter too. Their features and audio-token counts use the same extractor and encoder arithmetic.

The answer is the target text followed by `<|im_end|>`: the token the engine stops generating at, so
the model learns to end its turn where serving expects it. Only answer tokens are labelled;
everything before them (system, user turn, audio, the assistant header) is -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import _get_feat_extract_output_lengths

from evalsvc.audio import DecodedAudio
from evalsvc.engine.inputs import AUDIO_PAD, END_OF_TURN, AudioPromptProcessor
from evalsvc.engine.prompt import AUDIO_SLOT, PROMPT_VERSION
from evalsvc.engine.types import AudioPair

Task = Literal["ser", "caption", "assessment"]
TASKS: tuple[Task, ...] = get_args(Task)
"""In the paper's stage order."""
IGNORE_INDEX = -100
"""The label of a position that carries no loss (torch's cross-entropy default)."""

TASK_PROMPT_VERSION = "finetune-tasks-v1"
TASK_INSTRUCTIONS: dict[Task, str] = {
    "ser": "Which emotion does the speaker express? Answer with one word.",
    "caption": "Describe the speaker's emotional state and how their voice conveys it.",
}
_SINGLE_CLIP_PROMPT = "<|im_start|>user\n{audio}\n{instruction}<|im_end|>\n<|im_start|>assistant\n"
CLIPS_PER_TASK: dict[Task, int] = {"ser": 1, "caption": 1, "assessment": 2}


def task_prompt(task: Task) -> str:
    """The prompt text of a single-clip task with one audio slot (before audio tokens are expanded)."""
    return _SINGLE_CLIP_PROMPT.format(audio=AUDIO_SLOT, instruction=TASK_INSTRUCTIONS[task])


def prompt_versions() -> dict[str, str]:
    """What training.json records about the prompts the adapter was trained with."""
    return {
        "assessment": PROMPT_VERSION,
        "ser": TASK_PROMPT_VERSION,
        "caption": TASK_PROMPT_VERSION,
        **{f"{task}_instruction": text for task, text in TASK_INSTRUCTIONS.items()},
    }


@dataclass(frozen=True)
class EncodedExample:
    """One example as the model takes it: ids of prompt + answer, and its clips' features."""

    input_ids: list[int]
    prompt_length: int
    """Positions before the answer: they carry no loss."""
    features: list[torch.Tensor]
    """Log-mel features per clip, [n_mels, frames] each, in the order their audio tokens appear."""

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * self.prompt_length + self.input_ids[self.prompt_length :]


class TaskEncoder:
    """Encodes examples with the processor scoring uses; answers are tokenized on their own, as the
    engine's generation produces them after the prompt."""

    def __init__(self, processor: AudioPromptProcessor) -> None:
        self.processor = processor
        self.end_of_turn = processor.tokenizer.convert_tokens_to_ids(END_OF_TURN)

    def answer_ids(self, target: str) -> list[int]:
        """The labelled tokens of a target: its text, then `<|im_end|>`."""
        ids = self.processor.tokenizer(target, add_special_tokens=False)["input_ids"]
        return [*ids, self.end_of_turn]

    def encode(self, task: Task, clips: Sequence[DecodedAudio], target: str) -> EncodedExample:
        prompt_ids, features = (
            self._judge_prompt(clips) if task == "assessment" else self._single_clip_prompt(task, clips)
        )
        return EncodedExample(prompt_ids + self.answer_ids(target), len(prompt_ids), features)

    def _judge_prompt(self, clips: Sequence[DecodedAudio]) -> tuple[list[int], list[torch.Tensor]]:
        query, response = clips
        inputs = self.processor([AudioPair(query, response)])  # the served path, unchanged
        frames = inputs.feature_attention_mask.sum(-1).tolist()
        features = [inputs.input_features[i, :, : frames[i]] for i in range(2)]
        return inputs.input_ids[0].tolist(), features

    def _single_clip_prompt(
        self, task: Task, clips: Sequence[DecodedAudio]
    ) -> tuple[list[int], list[torch.Tensor]]:
        (clip,) = clips
        features, mask = self.processor.features([clip.samples])
        audio_tokens = int(_get_feat_extract_output_lengths(mask.sum(-1), self.processor.n_window)[0])
        prefix, suffix = task_prompt(task).split(AUDIO_PAD)
        text = prefix + AUDIO_PAD * audio_tokens + suffix
        ids = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids, [features[0]]


@dataclass
class Batch:
    """Right-padded examples: what one forward pass of training or validation takes."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    input_features: torch.Tensor
    feature_attention_mask: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def label_tokens(self) -> int:
        """Positions whose next token is labelled: the tokens the loss is averaged over."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def model_inputs(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids.to(device),
            "attention_mask": self.attention_mask.to(device),
            "input_features": self.input_features.to(device, dtype),
            "feature_attention_mask": self.feature_attention_mask.to(device),
        }


def collate(examples: Sequence[EncodedExample], pad_token_id: int) -> Batch:
    """One batch; clips keep their order (the model fills audio tokens row by row, clip by clip)."""
    length = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        size = len(example.input_ids)
        input_ids[row, :size] = torch.tensor(example.input_ids)
        labels[row, :size] = torch.tensor(example.labels)
        attention_mask[row, :size] = 1
    clips = [clip for example in examples for clip in example.features]
    frames = max(clip.shape[1] for clip in clips)
    input_features = torch.zeros((len(clips), clips[0].shape[0], frames))
    feature_attention_mask = torch.zeros((len(clips), frames), dtype=torch.long)
    for index, clip in enumerate(clips):
        input_features[index, :, : clip.shape[1]] = clip
        feature_attention_mask[index, : clip.shape[1]] = 1
    return Batch(input_ids, attention_mask, labels, input_features, feature_attention_mask)
