"""decode_audio / audio_from_array: every format decodes to the same kind of clip, every user error
has its code, and the content hash depends on the samples only."""

from __future__ import annotations

import hashlib
import io
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from evalsvc.audio import SAMPLE_RATE, AudioLimits, DecodedAudio, audio_from_array, decode_audio
from evalsvc.errors import (
    AudioEmpty,
    AudioNotFinite,
    AudioTooLarge,
    AudioTooLong,
    AudioTooShort,
    AudioUnreadable,
    InvalidParameter,
)
from evalsvc.settings import Settings

LIMITS = AudioLimits()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def voice(rate: int, seconds: float = 1.5) -> np.ndarray:
    """A vowel-like signal: harmonics of a gliding pitch under a syllable envelope."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    tone = sum(np.sin(k * pitch) / k for k in range(1, 12))
    return (0.3 * tone * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def stereo(rate: int, seconds: float = 1.5) -> np.ndarray:
    left = voice(rate, seconds)
    return np.stack([left, 0.5 * np.roll(left, 37)], axis=1)


def encode(frames: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, frames, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def expected_clip(frames: np.ndarray, rate: int) -> np.ndarray:
    mono = frames.mean(axis=1, dtype=np.float32) if frames.ndim == 2 else frames
    return soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ") if rate != SAMPLE_RATE else mono


def assert_valid_clip(clip: DecodedAudio, seconds: float) -> None:
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert not clip.samples.flags.writeable
    assert np.isfinite(clip.samples).all()
    assert clip.duration_s == pytest.approx(seconds, abs=0.002)
    assert clip.duration_s == len(clip.samples) / SAMPLE_RATE
    assert clip.sha256 == hashlib.sha256(clip.samples.astype("<f4").tobytes()).hexdigest()


LOSSLESS = [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"), ("FLAC", "PCM_16", "flac")]
LOSSY = [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")]


@pytest.mark.parametrize("rate", [44_100, 22_050])
@pytest.mark.parametrize(("fmt", "subtype", "extension"), LOSSLESS + LOSSY)
def test_every_format_decodes_to_a_16k_mono_clip(
    tmp_path: Path, fmt: str, subtype: str, extension: str, rate: int
) -> None:
    frames = stereo(rate)
    path = tmp_path / f"clip.{extension}"
    sf.write(path, frames, rate, format=fmt, subtype=subtype)

    clip = decode_audio(path, LIMITS)

    assert_valid_clip(clip, 1.5)
    reference = expected_clip(frames, rate)
    assert len(clip.samples) == len(reference)
    if (fmt, subtype) in [(f, s) for f, s, _ in LOSSLESS]:
        assert np.abs(clip.samples - reference).max() < 1e-3  # 16-bit quantisation, at worst
    else:
        assert np.corrcoef(clip.samples, reference)[0, 1] > 0.95  # a lossy codec: same waveform


@pytest.mark.parametrize(("fmt", "subtype", "extension"), LOSSLESS + LOSSY)
def test_bytes_and_path_give_the_same_clip(tmp_path: Path, fmt: str, subtype: str, extension: str) -> None:
    path = tmp_path / f"clip.{extension}"
    sf.write(path, stereo(22_050), 22_050, format=fmt, subtype=subtype)

    by_path, by_bytes = decode_audio(path, LIMITS), decode_audio(path.read_bytes(), LIMITS)

    assert by_path.sha256 == by_bytes.sha256
    assert np.array_equal(by_path.samples, by_bytes.samples)
    assert decode_audio(str(path), LIMITS).sha256 == by_path.sha256
    assert decode_audio(bytearray(path.read_bytes()), LIMITS).sha256 == by_path.sha256


def test_decoding_is_deterministic_and_the_key_follows_the_samples() -> None:
    query = (EXAMPLES / "query.wav").read_bytes()
    first, second = decode_audio(query, LIMITS), decode_audio(query, LIMITS)
    assert first.sha256 == second.sha256 and np.array_equal(first.samples, second.samples)
    assert decode_audio(EXAMPLES / "response.wav", LIMITS).sha256 != first.sha256


def test_the_same_pcm_in_any_lossless_container_has_one_key() -> None:
    """16-bit samples are converted by evalsvc, floats by libsndfile: both must give the same bits."""
    frames = np.round(stereo(SAMPLE_RATE) * 32767) / 32768
    keys = {
        decode_audio(encode(frames, SAMPLE_RATE, fmt, subtype), LIMITS).sha256
        for fmt, subtype in [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_24")]
    }
    assert len(keys) == 1


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_channels_are_averaged(subtype: str) -> None:
    frames = np.concatenate([stereo(SAMPLE_RATE), -0.25 * voice(SAMPLE_RATE)[:, None]], axis=1)
    wav = encode(frames, SAMPLE_RATE, "WAV", subtype)
    stored, _ = sf.read(io.BytesIO(wav), dtype="float32")

    clip = decode_audio(wav, LIMITS)

    assert stored.shape[1] == 3
    assert np.array_equal(clip.samples, stored.mean(axis=1, dtype=np.float32))


def test_example_clips_decode() -> None:
    for path in [
        EXAMPLES / "query.wav",
        EXAMPLES / "response.wav",
        *sorted((EXAMPLES / "pairs").glob("*.wav")),
    ]:
        clip = decode_audio(path, LIMITS)
        assert 2.0 <= clip.duration_s <= 8.0 and np.abs(clip.samples).max() > 0.1


# --- errors ---------------------------------------------------------------------------------------


def test_empty_audio() -> None:
    with pytest.raises(AudioEmpty) as empty_file:
        decode_audio(b"", LIMITS)
    assert empty_file.value.code == "audio_empty"
    with pytest.raises(AudioEmpty):
        decode_audio(encode(np.zeros(0, np.float32), SAMPLE_RATE, "WAV", "PCM_16"), LIMITS)
    with pytest.raises(AudioEmpty):
        audio_from_array(np.zeros(0, np.float32), SAMPLE_RATE, LIMITS)


def test_too_short() -> None:
    wav = encode(voice(SAMPLE_RATE, 0.05), SAMPLE_RATE, "WAV", "PCM_16")
    with pytest.raises(AudioTooShort) as error:
        decode_audio(wav, LIMITS)
    assert error.value.code == "audio_too_short"
    assert "0.050 s" in error.value.message and "EVALSVC_AUDIO_MIN_SECONDS" in error.value.message
    assert decode_audio(wav, AudioLimits(min_seconds=0.04)).duration_s == pytest.approx(0.05)
    with pytest.raises(AudioTooShort):  # the encoder needs one 25 ms window, whatever the setting
        audio_from_array(np.ones(300, np.float32), SAMPLE_RATE, AudioLimits(min_seconds=0.0))


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("MP3", "MPEG_LAYER_III")]
)
def test_too_long_is_refused_from_the_header_before_decoding(
    monkeypatch: pytest.MonkeyPatch, fmt: str, subtype: str
) -> None:
    data = encode(np.tile(voice(8_000, 1.0), 41), 8_000, fmt, subtype)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded a clip whose header already shows it is too long")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioTooLong) as error:
        decode_audio(data, LIMITS)
    assert error.value.code == "audio_too_long"
    assert "41.0 s" in error.value.message and "30.0 s (EVALSVC_AUDIO_MAX_SECONDS)" in error.value.message


def test_too_long_array() -> None:
    with pytest.raises(AudioTooLong):
        audio_from_array(np.zeros(8_000 * 3, np.float32), 8_000, AudioLimits(max_seconds=2.5))


@pytest.mark.parametrize("rate", [SAMPLE_RATE, 44_100])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(rate: int, bad: float) -> None:
    frames = voice(rate)
    frames[len(frames) // 2] = bad
    with pytest.raises(AudioNotFinite) as error:
        decode_audio(encode(frames, rate, "WAV", "FLOAT"), LIMITS)
    assert error.value.code == "audio_not_finite"
    with pytest.raises(AudioNotFinite):
        audio_from_array(frames, rate, LIMITS)


def test_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    wav = encode(voice(SAMPLE_RATE), SAMPLE_RATE, "WAV", "PCM_16")
    small = AudioLimits(max_bytes=len(wav) - 1)
    with pytest.raises(AudioTooLarge) as error:
        decode_audio(wav, small)
    assert error.value.code == "audio_too_large" and error.value.http_status == 413
    assert "EVALSVC_AUDIO_MAX_BYTES" in error.value.message
    path = tmp_path / "clip.wav"
    path.write_bytes(wav)
    with pytest.raises(AudioTooLarge):
        decode_audio(path, small)
    with pytest.raises(AudioTooLarge):  # size comes first: garbage over the limit is "too large"
        decode_audio(b"\x00" * 100, AudioLimits(max_bytes=99))
    assert decode_audio(wav, AudioLimits(max_bytes=len(wav))).duration_s == pytest.approx(1.5)


@pytest.mark.parametrize(
    "garbage",
    [b"not audio at all", bytes(range(256)) * 40, b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC" + bytes(64)],
)
def test_garbage_bytes_are_unreadable(garbage: bytes) -> None:
    with pytest.raises(AudioUnreadable) as error:
        decode_audio(garbage, LIMITS)
    assert error.value.code == "audio_unreadable"
    assert "send WAV, FLAC, OGG/Vorbis or MP3" in error.value.message


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("text.mp3", b"I lost my job today and I feel useless.\n", "its content is text ('I lost my job"),
        ("random_bytes.flac", random.Random(7).randbytes(3000), "match none of the audio formats"),
        ("random_magic.flac", b"fLaC" + bytes(64), "starts like an audio file"),
    ],
)
def test_a_file_that_is_not_audio_says_what_is_wrong_with_it(
    tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    """By path, libsndfile itself called these 'does not exist or is not a regular file (a pipe?)'."""
    path = tmp_path / name
    path.write_bytes(content)
    for source in (path, content):
        with pytest.raises(AudioUnreadable) as error:
            decode_audio(source, LIMITS)
        assert says in error.value.message
        assert "does not exist" not in error.value.message and "pipe" not in error.value.message
    with pytest.raises(AudioUnreadable) as error:
        decode_audio(path, LIMITS, name=f"audio/{name}")
    assert f"clip 'audio/{name}'" in error.value.message and str(tmp_path) not in error.value.message


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("MP3", "MPEG_LAYER_III")]
)
def test_truncated_files_are_unreadable(fmt: str, subtype: str) -> None:
    data = encode(voice(22_050, 2.0), 22_050, fmt, subtype)
    with pytest.raises(AudioUnreadable, match=r"truncated|cut short"):
        decode_audio(data[: len(data) // 2], LIMITS)


def test_a_streamed_wav_header_is_not_truncation() -> None:
    """espeak-ng, sox and ffmpeg on a pipe cannot seek back and leave placeholder sizes."""
    wav = bytearray(encode(voice(SAMPLE_RATE), SAMPLE_RATE, "WAV", "PCM_16"))
    data_at = wav.index(b"data")
    wav[4:8] = struct.pack("<I", 0x7FFFF024)
    wav[data_at + 4 : data_at + 8] = struct.pack("<I", 0x7FFFF000)
    assert decode_audio(bytes(wav), LIMITS).duration_s == pytest.approx(1.5)


def test_missing_and_non_audio_paths(tmp_path: Path) -> None:
    with pytest.raises(AudioUnreadable, match="No such file"):
        decode_audio(tmp_path / "missing.wav", LIMITS)
    with pytest.raises(AudioUnreadable, match="not a regular file"):
        decode_audio(tmp_path, LIMITS)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioUnreadable, match=r"notes\.wav"):
        decode_audio(text, LIMITS)


# --- arrays ---------------------------------------------------------------------------------------


def test_array_at_16k_is_copied_not_aliased() -> None:
    samples = voice(SAMPLE_RATE)
    clip = audio_from_array(samples, SAMPLE_RATE, LIMITS)
    assert_valid_clip(clip, 1.5)
    assert np.array_equal(clip.samples, samples)
    samples[:] = 0.0
    assert clip.sha256 == hashlib.sha256(clip.samples.tobytes()).hexdigest() and clip.samples.any()


def test_array_matches_the_same_audio_from_a_file() -> None:
    frames = stereo(44_100)
    from_file = decode_audio(encode(frames, 44_100, "WAV", "FLOAT"), LIMITS)
    from_array = audio_from_array(frames, 44_100, LIMITS)
    assert from_array.sha256 == from_file.sha256
    assert audio_from_array(frames.astype(np.float64), 44_100, LIMITS).sha256 == from_file.sha256


def test_integer_arrays_are_scaled_like_pcm() -> None:
    pcm = np.round(stereo(SAMPLE_RATE) * 32767).astype(np.int16)
    from_file = decode_audio(encode(pcm, SAMPLE_RATE, "WAV", "PCM_16"), LIMITS)
    assert audio_from_array(pcm, SAMPLE_RATE, LIMITS).sha256 == from_file.sha256


@pytest.mark.parametrize(
    "samples",
    [np.zeros((2, 16_000), np.float32), np.zeros((4, 4, 4), np.float32), np.zeros(16_000, np.complex64)],
    ids=["channels-first", "3-d", "complex"],
)
def test_malformed_arrays(samples: np.ndarray) -> None:
    with pytest.raises(AudioUnreadable, match="expected"):
        audio_from_array(samples, SAMPLE_RATE, LIMITS)


@pytest.mark.parametrize("rate", [0, -16_000, 16_000.5])
def test_bad_sample_rate(rate: float) -> None:
    with pytest.raises(InvalidParameter):
        audio_from_array(voice(SAMPLE_RATE), rate, LIMITS)  # type: ignore[arg-type]


def test_limits_come_from_settings() -> None:
    settings = Settings(audio_min_seconds=0.5, audio_max_seconds=12.0, audio_max_bytes=1000)
    assert AudioLimits.from_settings(settings) == AudioLimits(0.5, 12.0, 1000)
