"""Re-save a tiny thinker exactly as the hub stores Qwen3-Omni, real special-token ids included.

The hub checkpoints (Captioner, Instruct, Thinking) are the full model: a config whose thinker is
nested in `thinker_config`, tensors under `thinker.` in the transformers 4.x names with one tensor per
expert and projection, talker and code2wav tensors beside them, sharded with an index, and Qwen's
tokenizer, whose special tokens sit at ids 151643 and up (`<|im_start|>` 151644, `<|im_end|>` 151645,
`<|audio_start|>` 151669, `<|audio_end|>` 151670, `<|audio_pad|>` 151675). Tests load this copy of
the tiny model through the normal loader and must get the tiny model's own outputs, so nothing about
the real layout goes untested while no real checkpoint can be downloaded.

The real ids need a vocabulary of 152,064 rows. Every row the tiny tokenizer does not use is zero (in
the embedding and the LM head), so the copy computes exactly what the tiny model computes: hidden
states are identical, and a zero logit never wins greedy decoding over the tiny vocabulary's best
(positive) logit. Sampled decoding does differ: the zero rows take probability mass.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen3OmniMoeThinkerForConditionalGeneration,
)
from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeThinkerConfig

from evalsvc.engine.hub_writer import full_model_config, hub_tensors, save_sharded
from evalsvc.engine.layouts import hub_name
from evalsvc.engine.tiny import wrap_tokenizer

HUB_VOCAB_SIZE = 152_064
QWEN_SPECIAL_TOKEN_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
    "<|audio_start|>": 151669,
    "<|audio_end|>": 151670,
    "<|audio_pad|>": 151675,
}
# Ordinary (not special) added tokens of Qwen's tokenizer: the Thinking model writes its reasoning
# between them.
QWEN_THINK_TOKEN_IDS = {"<think>": 151667, "</think>": 151668}
_THINKER_TOKEN_FIELDS = (
    "audio_token_id",
    "audio_start_token_id",
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "user_token_id",
)
_TEXT_TOKEN_FIELDS = ("pad_token_id", "eos_token_id", "bos_token_id")
# A few tensors of the parts the thinker does not load, so that ignoring them is tested too.
_TALKER_AND_CODE2WAV = {
    "talker.model.layers.0.self_attn.q_proj.weight": (8, 8),
    "talker.codec_head.weight": (8, 8),
    "code2wav.decoder.0.conv.weight": (8, 8, 3),
}


def save_in_hub_layout(tiny_model: Path, destination: Path) -> dict[int, int]:
    """Write the checkpoint in `tiny_model` to `destination` in the hub's layout.

    Returns the token id map (tiny id -> hub id) for the ids that moved.
    """
    destination.mkdir(parents=True)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tiny_model))
    moved = {
        tokenizer.convert_tokens_to_ids(token): hub_id for token, hub_id in QWEN_SPECIAL_TOKEN_IDS.items()
    }
    _hub_tokenizer(tokenizer).save_pretrained(destination)
    for name in ("preprocessor_config.json",):
        (destination / name).write_bytes((tiny_model / name).read_bytes())

    thinker = Qwen3OmniMoeThinkerConfig.from_pretrained(str(tiny_model))
    _remap_token_ids(thinker, moved)
    full_model_config(thinker, enable_audio_output=True).save_pretrained(destination)
    GenerationConfig(
        eos_token_id=[QWEN_SPECIAL_TOKEN_IDS["<|im_end|>"], QWEN_SPECIAL_TOKEN_IDS["<|endoftext|>"]],
        pad_token_id=QWEN_SPECIAL_TOKEN_IDS["<|endoftext|>"],
    ).save_pretrained(destination)

    # From the loaded model, not its files: transformers may itself save in either naming.
    loaded = Qwen3OmniMoeThinkerForConditionalGeneration.from_pretrained(str(tiny_model))
    tensors = _hub_tensors(loaded.state_dict(), moved)
    total = sum(tensor.numel() * tensor.element_size() for _, tensor in tensors)
    save_sharded(tensors, destination, max_shard_bytes=total // 2 + 1)  # several shards, as on the hub
    return moved


def _hub_tokenizer(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """The same tokenizer with Qwen's ids for its special tokens, plus `<think>` and `</think>`."""
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    for entry in data["added_tokens"]:
        entry["id"] = vocab[entry["content"]] = QWEN_SPECIAL_TOKEN_IDS[entry["content"]]
    for token, token_id in QWEN_THINK_TOKEN_IDS.items():
        vocab[token] = token_id
        data["added_tokens"].append(
            {
                "id": token_id,
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,
            }
        )
    return wrap_tokenizer(Tokenizer.from_str(json.dumps(data)))


def _remap_token_ids(thinker: Qwen3OmniMoeThinkerConfig, moved: dict[int, int]) -> None:
    for field in _THINKER_TOKEN_FIELDS:
        setattr(thinker, field, moved.get(getattr(thinker, field), getattr(thinker, field)))
    text = thinker.text_config
    for field in _TEXT_TOKEN_FIELDS:
        value = getattr(text, field, None)
        if value is not None:
            setattr(text, field, moved.get(value, value))
    text.vocab_size = HUB_VOCAB_SIZE


def _hub_tensors(thinker: dict[str, torch.Tensor], moved: dict[int, int]) -> list[tuple[str, torch.Tensor]]:
    """Thinker tensors in hub names, experts split per expert, vocabulary rows at Qwen's ids, plus
    talker and code2wav tensors."""
    spread = {hub_name("model.language_model.embed_tokens.weight"), hub_name("lm_head.weight")}
    hub = [
        (name, _spread_rows(tensor, moved) if name in spread else tensor)
        for name, tensor in hub_tensors(thinker)
    ]
    generator = torch.Generator().manual_seed(0)
    hub += [(name, torch.randn(shape, generator=generator)) for name, shape in _TALKER_AND_CODE2WAV.items()]
    return hub


def _spread_rows(tensor: torch.Tensor, moved: dict[int, int]) -> torch.Tensor:
    spread = torch.zeros(HUB_VOCAB_SIZE, tensor.shape[1], dtype=tensor.dtype)
    for old in range(tensor.shape[0]):
        spread[moved.get(old, old)] = tensor[old]
    return spread
