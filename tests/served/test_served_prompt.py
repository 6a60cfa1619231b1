"""The generation server hears the in-process prompt: evalsvc's messages, rendered with the checkpoint's
own chat template as vLLM renders them, are the same token ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoConfig, AutoTokenizer
from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import _get_feat_extract_output_lengths

from evalsvc.engine.hub_layout import save_in_hub_layout
from evalsvc.engine.inputs import AUDIO_PAD, AudioPromptProcessor
from evalsvc.engine.merge_manifest import MergeManifest
from evalsvc.engine.served_requests import judge_messages
from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.engine.types import AudioPair
from tests.helpers import tone_pair


def as_vllm_hands_them_to_the_template(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A named imitation of the one step vLLM takes before the template (vLLM cannot run here):
    `_parse_chat_message_content_part` in the "openai" content format keeps text parts and turns each
    `input_audio` part into `{"type": "audio"}` (vllm/entrypoints/chat_utils.py)."""
    converted = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = [{"type": "audio"} if part["type"] == "input_audio" else part for part in content]
        converted.append({"role": message["role"], "content": content})
    return converted


def served_prompt_ids(checkpoint: Path, pair: AudioPair, processor: AudioPromptProcessor) -> list[int]:
    """Token ids of the request rendered with the checkpoint's own template, each audio pad expanded
    to the clip's token count as the model's processor does on the server (transformers' own count of
    the audio encoder's outputs)."""
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    rendered = tokenizer.apply_chat_template(
        as_vllm_hands_them_to_the_template(judge_messages(pair)), add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    pad = tokenizer.convert_tokens_to_ids(AUDIO_PAD)
    feature_mask = processor.features([pair.query.samples, pair.response.samples])[1]
    lengths = iter(_get_feat_extract_output_lengths(feature_mask.sum(-1), processor.n_window).tolist())
    expanded: list[int] = []
    for token in ids:
        expanded += [pad] * next(lengths) if token == pad else [token]
    assert next(lengths, None) is None, "one audio slot per clip"
    return expanded


@pytest.fixture(scope="module")
def hub_checkpoint(tiny_paths: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    destination = tmp_path_factory.mktemp("hub") / "Qwen3-Omni-hub-layout"
    save_in_hub_layout(tiny_paths.model, destination)
    return destination


@pytest.mark.parametrize("checkpoint", ["merged", "hub"])
def test_served_request_renders_to_the_in_process_prompt(
    checkpoint: str, merged_tiny: tuple[Path, MergeManifest], hub_checkpoint: Path
) -> None:
    directory = merged_tiny[0] if checkpoint == "merged" else hub_checkpoint
    config = AutoConfig.from_pretrained(str(directory)).thinker_config
    processor = AudioPromptProcessor.from_pretrained(directory, None, n_window=config.audio_config.n_window)
    for pair in (tone_pair(1.0, 2.0), tone_pair(3.3, 0.7, 300.0)):
        in_process = processor([pair]).input_ids[0].tolist()
        assert served_prompt_ids(directory, pair, processor) == in_process
    if checkpoint == "hub":
        assert 151644 in in_process and 151675 in in_process  # Qwen's real ids for <|im_start|>, pad
