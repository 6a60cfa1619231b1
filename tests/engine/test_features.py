"""LogMelExtractor: Whisper's features for a clip alone, whatever else is in the batch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from evalsvc.audio import SAMPLE_RATE, AudioLimits, decode_audio
from evalsvc.engine.features import LogMelExtractor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WHISPER = WhisperFeatureExtractor(feature_size=128)  # Qwen3-Omni's preprocessor_config.json values
EXTRACTOR = LogMelExtractor(WHISPER)


def speech(name: str) -> np.ndarray:
    return decode_audio(EXAMPLES / name, AudioLimits()).samples


def noise(length: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(length)).astype(np.float32)


def qwen_processor_features(clip: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """What Qwen3-Omni's processor computes for a single clip (its audio_kwargs)."""
    out = WHISPER(
        clip,
        sampling_rate=SAMPLE_RATE,
        padding="longest",
        truncation=False,
        return_attention_mask=True,
        return_tensors="pt",
    )
    return out["input_features"], out["attention_mask"]


@pytest.mark.parametrize("length", [201, 400, 1_600, 16_000 + 37, 3 * 16_000 + 159, 31 * 16_000])
def test_single_clip_matches_whisper(length: int) -> None:
    clip = noise(length, seed=length)
    expected, expected_mask = qwen_processor_features(clip)

    features, mask = EXTRACTOR([clip])

    assert features.dtype == torch.float32 and mask.dtype == torch.int64
    assert features.shape == expected.shape == (1, 128, length // 160)
    torch.testing.assert_close(features, expected, atol=1e-4, rtol=0)
    assert torch.equal(mask, expected_mask.long())


@pytest.mark.parametrize("name", ["query.wav", "response.wav", "pairs/pet_cold.wav"])
def test_speech_matches_whisper(name: str) -> None:
    clip = speech(name)
    expected, _ = qwen_processor_features(clip)
    torch.testing.assert_close(EXTRACTOR([clip])[0], expected, atol=1e-4, rtol=0)


def test_a_clip_does_not_depend_on_its_batch() -> None:
    short, long = speech("pairs/interview_cold.wav"), speech("query.wav")
    short_frames, long_frames = len(short) // 160, len(long) // 160
    alone, _ = EXTRACTOR([short])

    features, mask = EXTRACTOR([short, long, short[:16_000]])

    assert features.shape == (3, 128, long_frames)
    assert torch.equal(features[0, :, :short_frames], alone[0])
    assert not features[0, :, short_frames:].any()  # zero padding, nothing computed from it
    assert torch.equal(features[1], EXTRACTOR([long])[0][0])
    assert mask.sum(dim=1).tolist() == [short_frames, long_frames, 100]
    assert torch.equal(mask[0], (torch.arange(long_frames) < short_frames).long())
    swapped, _ = EXTRACTOR([long, short])
    assert torch.equal(swapped[1], features[0]) and torch.equal(swapped[0], features[1])


def test_whisper_batching_is_what_we_avoid() -> None:
    """Padded together, Whisper changes the short clip's features; this is why clips go alone.

    (Only where the clip does not end in silence: here it is cut mid-word.)
    """
    long = speech("query.wav")
    short = long[:40_000]
    frames = len(short) // 160
    batched = WHISPER([short, long], sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="pt")
    alone, _ = qwen_processor_features(short)
    assert (batched["input_features"][0, :, :frames] - alone[0]).abs().max() > 1e-3


def test_accepts_read_only_and_float64_clips_silently() -> None:
    clip = speech("response.wav")
    assert not clip.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features, _ = EXTRACTOR([clip])
    torch.testing.assert_close(EXTRACTOR([clip.astype(np.float64)])[0], features, atol=1e-6, rtol=0)


def test_empty_batch() -> None:
    features, mask = EXTRACTOR([])
    assert features.shape == (0, 128, 0) and mask.shape == (0, 0)


def test_clip_shorter_than_half_a_window_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than half an analysis window"):
        EXTRACTOR([noise(200, seed=0)])


def test_from_pretrained_reads_the_checkpoint_config(tmp_path: Path) -> None:
    WHISPER.save_pretrained(tmp_path)
    loaded = LogMelExtractor.from_pretrained(tmp_path)
    assert (loaded.n_mels, loaded.n_fft, loaded.hop_length) == (128, 400, 160)
    clip = noise(8_000, seed=1)
    assert torch.equal(loaded([clip])[0], EXTRACTOR([clip])[0])


@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
@pytest.mark.parametrize(
    ("kwargs", "message"), [({"sampling_rate": 24_000}, "24000 Hz"), ({"dither": 1e-4}, "dithers")]
)
def test_incompatible_extractors_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LogMelExtractor(WhisperFeatureExtractor(feature_size=128, **kwargs))
