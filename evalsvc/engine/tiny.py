"""Build a tiny random Qwen3-Omni judge: checkpoint, tokenizer, feature extractor, LoRA adapter, heads.

No checkpoint can be downloaded here, and tests must still exercise the real transformers/peft code
path, so the project builds its own miniature of the real architecture and loads it through exactly
the code that loads the 30B model. Its scores are random numbers; only its plumbing is real.

`ModelSize` sets its dimensions: `TINY` for the built-in model, larger ones for benchmarks that need
the real model's per-token cost without its weights (bench/bench_gpu.py), and `QWEN3_OMNI_30B_A3B`,
the published model, built only on the meta device to plan where its weights go.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen3OmniMoeThinkerConfig,
    Qwen3OmniMoeThinkerForConditionalGeneration,
    WhisperFeatureExtractor,
)
from transformers.utils import logging as transformers_logging

from evalsvc.engine.adapter import lora_config_for, quiet_peft
from evalsvc.engine.fingerprint import build_fingerprint
from evalsvc.engine.heads import HeadsConfig, ScoreHeads
from evalsvc.engine.profiles import PROFILE_FILE
from evalsvc.engine.prompt import INSTRUCTION_TEXT, SYSTEM_TEXT
from evalsvc.engine.tiny_layout import TinyModelPaths
from evalsvc.engine.types import Decoding


@dataclass(frozen=True)
class ModelSize:
    """The dimensions of a random thinker: a MoE text model and the Whisper-style audio encoder."""

    text_hidden: int
    text_layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    moe_intermediate: int
    experts: int
    experts_per_token: int
    audio_layers: int
    audio_hidden: int
    audio_heads: int
    audio_ffn: int
    audio_downsample_hidden: int
    vocab_size: int | None = None
    """None: the tokenizer's own size."""
    vision_depth: int = 1
    vision_hidden: int = 32
    vision_intermediate: int = 64
    vision_heads: int = 2
    vision_deepstack: tuple[int, ...] = (0,)


TINY = ModelSize(
    text_hidden=64,
    text_layers=2,
    attention_heads=4,
    kv_heads=2,
    head_dim=16,
    intermediate=128,
    moe_intermediate=48,  # fused gate/up is 96 x 64: not square, so no transposition goes unnoticed
    experts=4,
    experts_per_token=2,
    audio_layers=1,
    audio_hidden=32,
    audio_heads=2,
    audio_ffn=64,
    audio_downsample_hidden=16,
)
# The published Qwen3-Omni-30B-A3B thinker (Captioner, Instruct and Thinking alike): 31.7 B parameters.
# Built on the meta device only, to plan device maps and size hardware (nothing is allocated).
QWEN3_OMNI_30B_A3B = ModelSize(
    text_hidden=2048,
    text_layers=48,
    attention_heads=32,
    kv_heads=4,
    head_dim=128,
    intermediate=768,
    moe_intermediate=768,
    experts=128,
    experts_per_token=8,
    audio_layers=32,
    audio_hidden=1280,
    audio_heads=20,
    audio_ffn=5120,
    audio_downsample_hidden=480,
    vocab_size=152_064,
    vision_depth=27,
    vision_hidden=1152,
    vision_intermediate=4304,
    vision_heads=16,
    vision_deepstack=(8, 16, 24),
)
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Kept without whitespace control (`{%-`), which would also eat the newlines of the Qwen format. Like
# Qwen3-Omni's own template it takes content parts too (text, and audio as its three tokens), so a
# generation server renders the judge's request as the published checkpoint would
# (evalsvc.engine.served_requests).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'audio' or 'audio' in part or 'audio_url' in part or 'input_audio' in part %}"
    "<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = (
    SYSTEM_TEXT,
    INSTRUCTION_TEXT,
    "User query: System response: SCORES: NS=4 WA=3 EU=5 ES=2",
    "The user sounds sad and tired; they need comfort and practical help.",
    "The response is warm, acknowledges the loss, and offers support. It could ask a gentle question.",
    "I am so sorry to hear that. That sounds really hard, and it makes sense that you feel this way.",
)


def build_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Qwen's special tokens, trained on a few sentences."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    return wrap_tokenizer(tokenizer)


def wrap_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """A `tokenizers` tokenizer as transformers loads Qwen's: special tokens named, left padding, template."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={
            "audio_token": "<|audio_pad|>",
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_thinker_config(
    tokenizer: PreTrainedTokenizerFast, size: ModelSize = TINY
) -> Qwen3OmniMoeThinkerConfig:
    """The real architecture at `size` (the vision tower, which the judge drops, minimal unless `size`
    gives the real one)."""
    token = tokenizer.convert_tokens_to_ids
    text_config = {
        "vocab_size": size.vocab_size or len(tokenizer),
        "hidden_size": size.text_hidden,
        "intermediate_size": size.intermediate,
        "num_hidden_layers": size.text_layers,
        "num_attention_heads": size.attention_heads,
        "num_key_value_heads": size.kv_heads,
        "head_dim": size.head_dim,
        "moe_intermediate_size": size.moe_intermediate,
        "num_experts": size.experts,
        "num_experts_per_tok": size.experts_per_token,
        "max_position_embeddings": 8192,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": [2, 3, 3],
            "mrope_interleaved": True,
        },
        "pad_token_id": token("<|endoftext|>"),
        "eos_token_id": token("<|im_end|>"),
    }
    audio_config = {
        "num_mel_bins": 128,
        "encoder_layers": size.audio_layers,
        "encoder_attention_heads": size.audio_heads,
        "encoder_ffn_dim": size.audio_ffn,
        "d_model": size.audio_hidden,
        "output_dim": size.text_hidden,
        "downsample_hidden_size": size.audio_downsample_hidden,
    }
    vision_config = {
        "depth": size.vision_depth,
        "hidden_size": size.vision_hidden,
        "intermediate_size": size.vision_intermediate,
        "num_heads": size.vision_heads,
        "out_hidden_size": size.text_hidden,
        "deepstack_visual_indexes": list(size.vision_deepstack),
    }
    return Qwen3OmniMoeThinkerConfig(
        text_config=text_config,
        audio_config=audio_config,
        vision_config=vision_config,
        audio_token_id=token("<|audio_pad|>"),
        audio_start_token_id=token("<|audio_start|>"),
        image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        user_token_id=token("user") if "user" in tokenizer.get_vocab() else 0,
    )


def ensure_tiny_model(root: Path, seed: int = 0) -> TinyModelPaths:
    """The tiny model under `root`, built first if no complete build is there."""
    paths = TinyModelPaths(root)
    return paths if paths.complete() else build_tiny_model(root, seed, replace=False)


def build_tiny_model(
    root: Path,
    seed: int = 0,
    *,
    replace: bool = True,
    size: ModelSize = TINY,
    dtype: torch.dtype = torch.float32,
) -> TinyModelPaths:
    """Write a complete random judge under `root`; the same seed gives the same weights and fingerprint.

    Built in a temporary sibling directory and renamed into place, so an interrupted build never
    leaves a half-written model that a later run would trust. `dtype` is the dtype the checkpoint is
    saved in (bfloat16 halves the disk and load time of a large size).
    """
    transformers_logging.disable_progress_bar()
    paths = TinyModelPaths(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        staged = TinyModelPaths(staging)
        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        config = build_thinker_config(tokenizer, size)
        model = Qwen3OmniMoeThinkerForConditionalGeneration(config).to(dtype).eval()
        model.save_pretrained(staged.model)
        (staged.model / PROFILE_FILE).write_text(json.dumps({"profile": "tiny"}) + "\n")
        tokenizer.save_pretrained(staged.model)
        WhisperFeatureExtractor(
            feature_size=128, sampling_rate=16_000, hop_length=160, n_fft=400
        ).save_pretrained(staged.model)

        _build_adapter(model, staged.adapter, seed)
        backbone = build_fingerprint(str(staged.model), None, staged.adapter, None, Decoding()).backbone
        torch.manual_seed(seed + 1)
        heads = ScoreHeads(HeadsConfig(hidden_size=size.text_hidden, pooling="mean", backbone=backbone))
        heads.save(staged.heads)
        (staging / "BUILD_COMPLETE").write_text(json.dumps({"seed": seed}) + "\n")
        if not replace and paths.complete():
            return paths  # another process finished the same build first
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return paths


def _build_adapter(model: Qwen3OmniMoeThinkerForConditionalGeneration, directory: Path, seed: int) -> None:
    """A LoRA adapter with non-zero random B matrices, so that applying it really changes outputs."""
    torch.manual_seed(seed + 2)
    with quiet_peft():
        peft_model = get_peft_model(model, lora_config_for(model, init_lora_weights=False))
    peft_model.save_pretrained(directory)
