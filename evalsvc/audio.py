"""Decoding user audio into the 16 kHz mono float32 clips the model hears.

Every request passes through here, so the order of the checks is chosen to fail cheaply: the encoded
size before opening, the duration from the header before decoding a sample, and truncation before
resampling. Decoding is libsndfile (WAV, FLAC, OGG/Vorbis, MP3 and the rest of its formats); the
downmix is the mean of the channels and the resampler is soxr at 'HQ', the same as `librosa.load`.

The sha256 of the final samples is the content key of the result cache: the same recording sent as
FLAC or as WAV, by path or as bytes, maps to the same key as long as the decoded samples agree.
"""

from __future__ import annotations

import hashlib
import io
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from evalsvc.errors import (
    AudioEmpty,
    AudioError,
    AudioNotFinite,
    AudioTooLarge,
    AudioTooLong,
    AudioTooShort,
    AudioUnreadable,
    InvalidParameter,
)
from evalsvc.settings import Settings

SAMPLE_RATE = 16_000

# The audio encoder needs one full 25 ms analysis window (n_fft = 400 samples at 16 kHz); anything
# shorter has no frame to hear, whatever EVALSVC_AUDIO_MIN_SECONDS says.
_FLOOR_SECONDS = 0.025
# Streaming writers (espeak-ng and sox on a pipe, ffmpeg) leave sizes from here up in a WAV header
# because they cannot seek back; such a size says "unknown", not "truncated".
_STREAMED_WAV_SIZE = 0x7FFF_0000
# An MP3 without an exact Xing/LAME frame count has an estimated length; allow it to fall short a little.
_COMPLETE_FRACTION = 0.99
_FORMATS_HINT = "send WAV, FLAC, OGG/Vorbis or MP3"
_HEAD_BYTES = 64


@dataclass(frozen=True)
class AudioLimits:
    min_seconds: float = 0.1
    max_seconds: float = 30.0
    max_bytes: int = 25 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> AudioLimits:
        return cls(settings.audio_min_seconds, settings.audio_max_seconds, settings.audio_max_bytes)


@dataclass(frozen=True, eq=False)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE, read-only
    duration_s: float
    sha256: str


def decode_audio(source: bytes | str | Path, limits: AudioLimits, *, name: str | None = None) -> DecodedAudio:
    """Decode an encoded file (bytes, or a path to one) and validate it against `limits`.

    `name` is how messages call a file given by path (default: the path itself); callers that read
    under a data root pass the path relative to it. Raises an `AudioError` subclass for anything the
    user must fix; no decoder exception escapes.
    """
    data = bytes(source) if isinstance(source, bytearray | memoryview) else source
    if isinstance(data, bytes):
        label, size = "clip", len(data)
    else:
        path = Path(data)
        label = f"clip '{name or path}'"
        try:
            status = path.stat()
        except OSError as error:
            raise AudioUnreadable(f"cannot read {label}: {error.strerror}") from error
        if not stat.S_ISREG(status.st_mode):
            raise AudioUnreadable(f"{label} is not a regular file; pass the path of an audio file")
        size = status.st_size
    if size == 0:
        raise AudioEmpty(f"{label} is an empty file (0 bytes); send a recording")
    if size > limits.max_bytes:
        raise AudioTooLarge(
            f"{label} is {size / 2**20:.1f} MiB; the limit is {limits.max_bytes / 2**20:.1f} MiB "
            "(EVALSVC_AUDIO_MAX_BYTES); trim it or send a compressed format (FLAC, OGG, MP3)"
        )
    try:
        # libsndfile always gets a stream, never the path: given a path, it blames a file it cannot
        # parse on the path ("does not exist or is not a regular file") after its own checks.
        stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else open(path, "rb")  # noqa: SIM115
    except OSError as error:
        raise AudioUnreadable(f"cannot read {label}: {error.strerror}") from error
    try:
        with stream, sf.SoundFile(stream) as sound:
            rate, announced = sound.samplerate, sound.frames
            if sound.format in ("WAV", "WAVEX"):
                with io.BytesIO(data) if isinstance(data, bytes) else open(path, "rb") as raw:
                    _check_wav_complete(label, raw)
            _check_duration(label, announced, rate, limits)
            # libsndfile's int16 -> float conversion is a slow scalar loop; _finish does it exactly.
            frames = sound.read(dtype="int16" if sound.subtype == "PCM_16" else "float32", always_2d=True)
    except AudioError:
        raise
    except Exception as error:  # libsndfile and its codecs raise many types; all mean "cannot decode"
        detail = getattr(error, "error_string", None) or str(error) or type(error).__name__
        raise AudioUnreadable(_undecodable(label, detail.strip(), _head(data))) from error
    if len(frames) < announced * _COMPLETE_FRACTION:
        raise AudioUnreadable(
            f"{label} is truncated: its header announces {announced / rate:.2f} s but only "
            f"{len(frames) / rate:.2f} s could be decoded; send the complete file"
        )
    return _finish(label, frames, rate)


def name_under(path: Path, roots: Sequence[Path]) -> str:
    """How messages name a file: relative to the data root that holds it, so that an answer never
    shows where a server keeps its data; as given when no root holds it (the local CLI's files)."""
    for root in roots:
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path)


def _head(data: bytes | str | Path) -> bytes:
    """The first bytes of the file, to say what it looks like when it is not audio."""
    if isinstance(data, bytes):
        return data[:_HEAD_BYTES]
    try:
        with open(data, "rb") as stream:
            return stream.read(_HEAD_BYTES)
    except OSError:
        return b""


def _undecodable(label: str, detail: str, head: bytes) -> str:
    """What is wrong with a file libsndfile refused, in the user's terms rather than libsndfile's."""
    if detail.rstrip(".") == "Format not recognised":
        return f"{label} is not audio in a format evalsvc reads: {_looks_like(head)}; {_FORMATS_HINT}"
    if detail.rstrip(".") == "File contains data in an unimplemented format":
        return (
            f"{label} starts like an audio file but its audio data cannot be decoded (an unsupported "
            f"codec, or damaged); {_FORMATS_HINT}"
        )
    return f"cannot decode {label} ({detail}): it is damaged, cut short or not in a supported format; {_FORMATS_HINT}"


def _looks_like(head: bytes) -> str:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text.strip() and all(char.isprintable() or char.isspace() for char in text):
        return f"its content is text ({text.strip()[:40]!r})"
    return "its bytes match none of the audio formats it reads; it may be damaged or another kind of file"


def audio_from_array(samples: np.ndarray, sample_rate: int, limits: AudioLimits) -> DecodedAudio:
    """Validate in-memory samples, 1-D mono or 2-D (frames, channels), like a decoded file.

    Floats are taken as full scale +-1; signed integers are scaled as libsndfile scales PCM. There is
    no byte limit: the duration limit already bounds the memory.
    """
    array = np.asarray(samples)
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise InvalidParameter(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if array.ndim != 2 or array.shape[1] > array.shape[0] > 0:
        raise AudioUnreadable(
            f"audio array has shape {array.shape}; expected (frames,) or (frames, channels)"
        )
    if array.dtype.kind == "i":
        array = array.astype(np.float32) / np.float32(2 ** (8 * array.dtype.itemsize - 1))
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)  # a copy: the caller may go on writing to its array
    else:
        raise AudioUnreadable(f"audio array has dtype {array.dtype}; expected floats or signed integers")
    _check_duration("clip", len(array), sample_rate, limits)
    return _finish("clip", array, sample_rate)


def _check_duration(label: str, frames: int, rate: int, limits: AudioLimits) -> None:
    if frames == 0:
        raise AudioEmpty(f"{label} contains no audio samples; send a non-empty recording")
    seconds = frames / rate
    if seconds > limits.max_seconds:
        raise AudioTooLong(
            f"{label} is {seconds:.1f} s long; the limit is {limits.max_seconds:.1f} s "
            "(EVALSVC_AUDIO_MAX_SECONDS); trim it"
        )
    minimum = max(limits.min_seconds, _FLOOR_SECONDS)
    if seconds < minimum:
        raise AudioTooShort(
            f"{label} is {seconds:.3f} s long; the minimum is {minimum:.3f} s (EVALSVC_AUDIO_MIN_SECONDS)"
        )


def _check_wav_complete(label: str, stream: BinaryIO) -> None:
    """libsndfile quietly shortens a WAV whose data chunk runs past the end of the file; refuse it.

    A cut upload would otherwise be scored, and cached, as if the speaker had stopped mid-word.
    """
    total = stream.seek(0, io.SEEK_END)
    stream.seek(12)  # past the RIFF header: "RIFF", size, "WAVE"
    while len(header := stream.read(8)) == 8:
        chunk, declared = struct.unpack("<4sI", header)
        if chunk == b"data":
            available = total - stream.tell()
            if available < declared < _STREAMED_WAV_SIZE:
                raise AudioUnreadable(
                    f"{label} is truncated: its WAV header announces {declared} bytes of audio but "
                    f"only {available} are present; send the complete file"
                )
            return
        stream.seek(declared + (declared & 1), io.SEEK_CUR)  # chunks are word aligned


def _finish(label: str, frames: np.ndarray, rate: int) -> DecodedAudio:
    """Downmix, resample, check and hash `frames` (float32 or int16, owned by us): the final samples.

    int16 becomes x / 32768 as libsndfile would convert it; the channel sum of int16 is exact in
    float32 and the scale a power of two, so either input dtype gives the same bits.
    """
    mono = frames[:, 0].astype(np.float32, copy=frames.shape[1] > 1)
    # Channel by channel is ~30x faster than frames.mean(axis=1) on (n, 2) and gives the same bits.
    for channel in range(1, frames.shape[1]):
        mono += frames[:, channel]
    if frames.dtype == np.int16:
        mono *= np.float32(1 / 32768)
    if frames.shape[1] > 1:
        mono /= np.float32(frames.shape[1])
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    if not np.isfinite(mono).all():
        raise AudioNotFinite(
            f"{label} contains NaN or infinite sample values; re-export it as 16-bit PCM WAV or FLAC"
        )
    mono.flags.writeable = False
    digest = hashlib.sha256(mono.astype("<f4", copy=False)).hexdigest()
    return DecodedAudio(mono, len(mono) / SAMPLE_RATE, digest)
