"""What the model is trained on, token by token: the served prompt, and loss on the answer only."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig

from evalsvc.engine.inputs import AudioPromptProcessor
from evalsvc.engine.prompt import render_prompt
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.training.finetune.tasks import IGNORE_INDEX, TaskEncoder, collate, task_prompt
from tests.helpers import tone, tone_pair

JUDGE_ANSWER = "The response is warm.\nSCORES: NS=4 WA=3 EU=5 ES=2"


@pytest.fixture(scope="module")
def processor(tiny_paths: TinyModelPaths) -> AudioPromptProcessor:
    n_window = AutoConfig.from_pretrained(tiny_paths.model).audio_config.n_window
    return AudioPromptProcessor.from_pretrained(tiny_paths.model, None, n_window=n_window)


def token(processor: AudioPromptProcessor, name: str) -> int:
    return processor.tokenizer.convert_tokens_to_ids(name)


def test_the_assessment_prompt_is_the_served_prompt_and_only_the_answer_is_labelled(
    processor: AudioPromptProcessor,
) -> None:
    pair = tone_pair(1.0, 1.6)
    encoded = TaskEncoder(processor).encode("assessment", [pair.query, pair.response], JUDGE_ANSWER)
    served = processor([pair])
    prompt = encoded.input_ids[: encoded.prompt_length]
    assert prompt == served.input_ids[0].tolist()  # what scoring feeds the model, token for token
    header = processor.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert prompt[-len(header) :] == header  # the prompt ends where the assistant's turn starts

    labels = encoded.labels
    assert labels[: encoded.prompt_length] == [IGNORE_INDEX] * encoded.prompt_length
    answer = labels[encoded.prompt_length :]
    assert IGNORE_INDEX not in answer
    assert answer == encoded.input_ids[encoded.prompt_length :]
    assert answer[-1] == token(processor, "<|im_end|>")  # the model learns to end its turn
    assert processor.tokenizer.decode(answer[:-1]) == JUDGE_ANSWER
    # every audio token, the system text and the instruction carry no loss
    audio = token(processor, "<|audio_pad|>")
    assert all(
        label == IGNORE_INDEX for tid, label in zip(encoded.input_ids, labels, strict=True) if tid == audio
    )
    assert torch.equal(torch.cat(encoded.features, dim=1), _unpadded(served))


def _unpadded(served: object) -> torch.Tensor:
    frames = served.feature_attention_mask.sum(-1).tolist()  # type: ignore[attr-defined]
    return torch.cat([served.input_features[i, :, : frames[i]] for i in range(2)], dim=1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("task", ["ser", "caption"])
def test_single_clip_prompts_hold_one_audio_token_per_encoder_frame(
    processor: AudioPromptProcessor, task: str
) -> None:
    clip = tone(1.3, 250.0)
    encoded = TaskEncoder(processor).encode(task, [clip], "sad")  # type: ignore[arg-type]
    prompt = processor.tokenizer.decode(encoded.input_ids[: encoded.prompt_length])
    before, after = task_prompt(task).split("<|audio_pad|>")  # type: ignore[arg-type]
    assert prompt.startswith(before) and prompt.endswith(after)
    # 1.3 s = 130 mel frames; Qwen3-Omni's encoder gives 13 tokens per second (17 for 130 frames)
    assert encoded.input_ids.count(token(processor, "<|audio_pad|>")) == 17
    assert encoded.labels[encoded.prompt_length :] == [
        *processor.tokenizer("sad", add_special_tokens=False)["input_ids"],
        token(processor, "<|im_end|>"),
    ]
    assert "<|im_start|>system" not in prompt and render_prompt() not in prompt


def test_a_batch_is_right_padded_with_padding_unlabelled_and_clips_in_order(
    processor: AudioPromptProcessor,
) -> None:
    encoder = TaskEncoder(processor)
    pair = tone_pair(0.6, 1.1)
    short = encoder.encode("ser", [tone(0.4, 200.0)], "calm")
    judged = encoder.encode("assessment", [pair.query, pair.response], JUDGE_ANSWER)
    batch = collate([short, judged], processor.pad_token_id)
    length = len(short.input_ids)
    assert batch.input_ids.shape == (2, len(judged.input_ids))
    assert batch.attention_mask[0].tolist() == [1] * length + [0] * (len(judged.input_ids) - length)
    assert batch.labels[0, length:].eq(IGNORE_INDEX).all()
    assert batch.labels[0, :length].tolist() == short.labels
    assert batch.label_tokens == (length - short.prompt_length) + (
        len(judged.input_ids) - judged.prompt_length
    )
    # three clips, in the order their audio tokens appear: the ser clip, then query, then response
    frames = batch.feature_attention_mask.sum(-1).tolist()
    assert frames == [clip.shape[1] for clip in (*short.features, *judged.features)]
