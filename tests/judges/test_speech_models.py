"""Transcripts and emotion labels through transformers, on the tiny random models the project builds.

The models load with `from_pretrained` from directories laid out like the hub checkpoints
(openai/whisper-large-v3, an audio-classification model), through the same code as the real ones.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from evalsvc.audio import AudioLimits, DecodedAudio, audio_from_array, decode_audio
from evalsvc.errors import EmotionLabelsUnmapped, InvalidParameter, ModelLoadError
from evalsvc.judges.emotion_models import TransformersEmotionLabeller, load_emotion_labeller
from evalsvc.judges.emotions import EMOTIONS
from evalsvc.judges.tiny import tiny_emotion_dir, tiny_whisper_dir
from evalsvc.judges.transcripts import WhisperTranscriber
from evalsvc.settings import Settings
from tests.judges.conftest import example_clip_paths


@pytest.fixture(scope="module")
def clips() -> list[DecodedAudio]:
    return [decode_audio(path, AudioLimits()) for path in example_clip_paths()]


def noise(seconds: float, seed: int) -> DecodedAudio:
    samples = np.random.default_rng(seed).standard_normal(int(16_000 * seconds)).astype(np.float32) * 0.1
    return audio_from_array(samples, 16_000, AudioLimits(max_seconds=60.0))


def test_tiny_whisper_is_a_hub_layout_checkpoint(
    judge_models_settings: Settings, transcriber: WhisperTranscriber
) -> None:
    directory = tiny_whisper_dir(judge_models_settings.data_dir, 0)
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
    ):
        assert (directory / name).is_file(), name
    generation = json.loads((directory / "generation_config.json").read_text())
    assert {"<|en|>", "<|zh|>"} <= set(generation["lang_to_id"])
    assert set(generation["task_to_id"]) == {"transcribe", "translate"}


def test_batched_transcripts_equal_one_by_one_in_order(
    transcriber: WhisperTranscriber, clips: list[DecodedAudio]
) -> None:
    batched = transcriber.transcribe(clips)
    alone = [transcriber.transcribe([clip])[0] for clip in clips]
    assert batched == alone
    assert len({transcript.text for transcript in batched}) > 1  # the text depends on the clip
    assert all(transcript.text for transcript in batched)
    assert transcriber.transcribe(list(reversed(clips))) == list(reversed(batched))


def test_language_is_detected_per_clip_or_forced(
    judge_models_settings: Settings, clips: list[DecodedAudio]
) -> None:
    auto = WhisperTranscriber.load(judge_models_settings)
    chinese = WhisperTranscriber.load(judge_models_settings.model_copy(update={"asr_language": "chinese"}))
    assert all(t.language == "en" for t in auto.transcribe(clips[:2]))  # the tiny model's detection
    assert all(t.language == "zh" for t in chinese.transcribe(clips[:2]))
    assert chinese.provenance.options["language"] == "zh"
    assert auto.provenance.options["language"] == "auto"
    assert auto.provenance.key != chinese.provenance.key


def test_unknown_language_is_refused(judge_models_settings: Settings) -> None:
    with pytest.raises(InvalidParameter, match="not a language of this Whisper"):
        WhisperTranscriber.load(judge_models_settings.model_copy(update={"asr_language": "klingon"}))


def test_a_clip_over_30_s_is_transcribed_whole_not_cut(transcriber: WhisperTranscriber) -> None:
    long = noise(40.0, seed=1)
    head = DecodedAudio(long.samples[: 16_000 * 30].copy(), 30.0, "head")
    whole, first_window = transcriber.transcribe([long, head])
    assert whole.text and whole.text != first_window.text


def test_transcriber_provenance_names_the_checkpoint(
    judge_models_settings: Settings, transcriber: WhisperTranscriber
) -> None:
    provenance = transcriber.provenance
    assert provenance.role == "asr" and provenance.backend == "transformers"
    assert provenance.model_id == "local:tiny-whisper-seed0"
    assert provenance.weights_sha256 is not None and len(provenance.weights_sha256) == 64
    assert provenance.options == {
        "language": "auto",
        "task": "transcribe",
        "num_beams": 1,
        "max_new_tokens": 8,
    }
    assert WhisperTranscriber.load(judge_models_settings).provenance.key == provenance.key  # stable
    beams = WhisperTranscriber.load(judge_models_settings.model_copy(update={"asr_num_beams": 2}))
    assert beams.provenance.key != provenance.key


def test_missing_asr_checkpoint_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot load the ASR model"):
        WhisperTranscriber.load(Settings(data_dir=tmp_path, asr_model=str(tmp_path / "nowhere")))


def test_emotion_labels_are_the_seven_batched_like_alone(
    labeller: TransformersEmotionLabeller, clips: list[DecodedAudio]
) -> None:
    labels = labeller.label(clips)
    alone = [labeller.label([clip])[0] for clip in clips]
    for batched, single in zip(labels, alone, strict=True):
        assert batched.label == single.label
        assert batched.confidence == pytest.approx(single.confidence, abs=1e-5)
    for label in labels:
        assert label.label in EMOTIONS
        assert set(label.probabilities) == set(EMOTIONS)
        assert sum(label.probabilities.values()) == pytest.approx(1.0)
        assert label.confidence == max(label.probabilities.values())
    assert len({round(label.confidence, 6) for label in labels}) > 1  # depends on the clip


def test_emotion_provenance_holds_the_label_mapping(
    labeller: TransformersEmotionLabeller, judge_models_settings: Settings
) -> None:
    provenance = labeller.provenance
    assert provenance.role == "emotion" and provenance.model_id == "local:tiny-emotion-seed0"
    assert provenance.options["targets"][provenance.options["classes"].index("其他/other")] == ""
    remapped = TransformersEmotionLabeller.load(
        judge_models_settings.model_copy(update={"emotion_label_map": {"其他/other": "neutral"}})
    )
    assert remapped.provenance.key != provenance.key


def test_a_classifier_with_unknown_label_names_is_refused_then_mapped(
    judge_models_settings: Settings, tmp_path: Path
) -> None:
    source = tiny_emotion_dir(judge_models_settings.data_dir, 0)
    target = tmp_path / "generic-classifier"
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    names = [f"LABEL_{index}" for index in range(len(config["id2label"]))]
    config["id2label"] = dict(enumerate(names))
    config["label2id"] = {name: index for index, name in enumerate(names)}
    (target / "config.json").write_text(json.dumps(config))
    settings = judge_models_settings.model_copy(update={"emotion_model": str(target)})
    with pytest.raises(EmotionLabelsUnmapped, match="EVALSVC_EMOTION_LABEL_MAP"):
        load_emotion_labeller(settings)
    mapping = dict(zip(names, [*EMOTIONS, "", ""], strict=True))
    mapped = load_emotion_labeller(settings.model_copy(update={"emotion_label_map": mapping}))
    assert mapped.label([noise(1.0, seed=2)])[0].label in EMOTIONS


def test_emotion2vec_without_funasr_says_how_to_install(
    judge_models_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FunASR is an optional extra (the dev extra installs it, so its absence is made here: an entry of
    None in sys.modules makes its import fail): its model is refused at load with the command that
    installs it."""
    monkeypatch.setitem(sys.modules, "funasr", None)
    settings = judge_models_settings.model_copy(
        update={"emotion_model": "emotion2vec/emotion2vec_plus_large", "emotion_backend": "auto"}
    )
    with pytest.raises(ModelLoadError, match=r"pip install 'evalsvc\[emotion2vec\]'"):
        load_emotion_labeller(settings)
