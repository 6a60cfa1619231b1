"""Tiny random Whisper and emotion classifier, built here, loaded like the real checkpoints.

No checkpoint can be downloaded in tests, yet the transcript and emotion paths must run through
transformers for real: `from_pretrained` on a directory with config, weights, tokenizer or feature
extractor and generation config, exactly as for openai/whisper-large-v3 or a hub classifier. The
Whisper has the real special-token layout (start of transcript, every language token, task tokens,
no-timestamps, the 1501 timestamp tokens) so language detection and forced decoding prompts work;
its transcripts are random text. The classifier is a Wav2Vec2 sequence classifier whose classes are
Emotion2Vec's nine bilingual names, so the mapping onto the paper's seven (dropped classes included)
is exercised on the real path.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES
from transformers.utils import logging as transformers_logging

from evalsvc.judges.emotions import EMOTION2VEC_LABELS

_COMPLETE = "BUILD_COMPLETE"
_CORPUS = (
    "I lost my job today and I do not know what to do.",
    "I am so sorry to hear that. That sounds really hard.",
    "我今天很难过，工作也丢了。",
    "听起来真的很不容易，我在这里陪着你。",
)
_END = "<|endoftext|>"
_START = "<|startoftranscript|>"
_TASKS = ("<|translate|>", "<|transcribe|>")
_NO_TIMESTAMPS = "<|notimestamps|>"
_SPECIALS = (
    *(f"<|{code}|>" for code in LANGUAGES),
    *_TASKS,
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    _NO_TIMESTAMPS,
)
"""Whisper's special tokens after <|startoftranscript|>, in the real vocabulary's order."""


def tiny_whisper_dir(data_dir: Path, seed: int) -> Path:
    return data_dir / f"tiny-whisper-seed{seed}"


def tiny_emotion_dir(data_dir: Path, seed: int) -> Path:
    return data_dir / f"tiny-emotion-seed{seed}"


def ensure_tiny_whisper(root: Path, seed: int = 0) -> Path:
    return (
        root if (root / _COMPLETE).is_file() else _build_atomically(root, lambda d: _write_whisper(d, seed))
    )


def ensure_tiny_emotion_classifier(root: Path, seed: int = 0) -> Path:
    if (root / _COMPLETE).is_file():
        return root
    return _build_atomically(root, lambda d: _write_emotion_classifier(d, seed))


def build_whisper_tokenizer() -> WhisperTokenizer:
    """A byte-level BPE trained on a few sentences, with Whisper's special and timestamp tokens."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=[_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [
        tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in state["merges"]
    ]
    tokenizer = WhisperTokenizer(vocab=state["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": [_START, *_SPECIALS]})
    tokenizer.add_tokens([f"<|{index * 0.02:.2f}|>" for index in range(1501)])
    return tokenizer


def _write_whisper(directory: Path, seed: int) -> None:
    tokenizer = build_whisper_tokenizer()
    token = tokenizer.convert_tokens_to_ids
    end = token(_END)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=128,  # as whisper-large-v3
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,  # 30 s of 10 ms frames after the stride-2 convolution
        max_target_positions=448,
        init_std=0.5,  # large random weights: the transcript depends on the audio, not on the model alone
        pad_token_id=end,
        bos_token_id=end,
        eos_token_id=end,
        decoder_start_token_id=token(_START),
        begin_suppress_tokens=[end],
        suppress_tokens=[],
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    # Random weights mostly emit timestamp and special tokens, an empty transcript. Their embedding
    # rows (tied to the output projection) are zeroed, so their logits are 0 and random text tokens
    # win: the tiny model writes text the tests can follow. Language detection then picks the first
    # language token, 'en', for every clip.
    with torch.no_grad():
        model.get_input_embeddings().weight[token(_START) :] = 0.0
    model.generation_config = GenerationConfig(
        decoder_start_token_id=token(_START),
        bos_token_id=end,
        eos_token_id=end,
        pad_token_id=end,
        max_length=448,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": token(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"translate": token(_TASKS[0]), "transcribe": token(_TASKS[1])},
        no_timestamps_token_id=token(_NO_TIMESTAMPS),
        prev_sot_token_id=token("<|startofprev|>"),
        max_initial_timestamp_index=50,
        begin_suppress_tokens=[end],
        suppress_tokens=[],
        return_timestamps=False,
    )
    model.save_pretrained(directory)
    WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer
    ).save_pretrained(directory)


def _write_emotion_classifier(directory: Path, seed: int) -> None:
    labels = dict(enumerate(EMOTION2VEC_LABELS))
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        # The real feature encoder's strides (5 x 2^6 = 320 samples: 50 frames a second), narrow.
        conv_dim=(16,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_feat_extract_layers=7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",  # large SER checkpoints: layer norm, attention mask honoured
        classifier_proj_size=16,
        initializer_range=0.5,  # large random weights: labels that differ from clip to clip
        id2label=labels,
        label2id={name: index for index, name in labels.items()},
    )
    torch.manual_seed(seed)
    Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(directory)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(directory)


def _build_atomically(root: Path, write: Callable[[Path], None]) -> Path:
    """Write into a temporary sibling, then rename: an interrupted build is never mistaken for a model."""
    transformers_logging.disable_progress_bar()
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        write(staging)
        (staging / _COMPLETE).write_text("{}\n")
        if (root / _COMPLETE).is_file():
            return root  # another process finished the same build first
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root
