"""Classifier label names onto the paper's seven emotions: the table, overrides, dropped classes, and
FunASR's Emotion2Vec results (checked on the result format FunASR documents; FunASR itself is an
optional extra that the tests do not install)."""

from __future__ import annotations

import pytest

from evalsvc.errors import EmotionLabelsUnmapped, InvalidParameter, ModelLoadError
from evalsvc.judges.emotion_models import labels_from_funasr_result
from evalsvc.judges.emotions import EMOTION2VEC_LABELS, EMOTIONS, LabelMapping


def test_emotion2vec_classes_map_onto_the_seven_and_drop_other_and_unknown() -> None:
    mapping = LabelMapping.for_classes(EMOTION2VEC_LABELS)
    assert mapping.targets == (
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "",
        "sadness",
        "surprise",
        "",
    )


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        (["ang", "hap", "neu", "sad"], ["anger", "happiness", "neutral", "sadness"]),  # IEMOCAP (SUPERB ER)
        (
            ["Angry", "Calm", "Disgust", "Fearful", "Happy", "Neutral", "Sad", "Surprised"],
            ["anger", "neutral", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"],
        ),  # RAVDESS
        (
            ["joy", "sadness", "anger", "fear", "surprise", "disgust", "neutral"],
            ["happiness", "sadness", "anger", "fear", "surprise", "disgust", "neutral"],
        ),
    ],
)
def test_common_checkpoint_label_sets_map(classes: list[str], expected: list[str]) -> None:
    assert list(LabelMapping.for_classes(classes).targets) == expected


def test_dropped_mass_is_renormalised_and_ties_follow_the_paper_order() -> None:
    mapping = LabelMapping.for_classes(EMOTION2VEC_LABELS)
    # 'other' is the classifier's top class, but it is not an emotion of the paper.
    label = mapping.collapse([0.1, 0.0, 0.0, 0.2, 0.1, 0.5, 0.1, 0.0, 0.0])
    assert label.raw_label == "其他/other"
    assert label.label == "happiness"
    assert label.confidence == pytest.approx(0.4)
    assert sum(label.probabilities.values()) == pytest.approx(1.0)
    tie = mapping.collapse([0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5])
    assert tie.label == EMOTIONS[0]
    assert tie.probabilities == dict.fromkeys(EMOTIONS, pytest.approx(1 / 7))


def test_two_classes_for_one_label_add_up() -> None:
    mapping = LabelMapping.for_classes(["neutral", "calm", "sad"])
    label = mapping.collapse([0.3, 0.3, 0.4])
    assert label.label == "neutral" and label.confidence == pytest.approx(0.6)


def test_unknown_names_refuse_the_checkpoint_naming_the_setting() -> None:
    with pytest.raises(EmotionLabelsUnmapped, match=r"\['LABEL_1'\].*EVALSVC_EMOTION_LABEL_MAP"):
        LabelMapping.for_classes(["angry", "LABEL_1"])
    with pytest.raises(EmotionLabelsUnmapped, match="none of"):
        LabelMapping.for_classes(["other", "unknown"])


def test_overrides_add_names_and_are_checked() -> None:
    mapping = LabelMapping.for_classes(["angry", "LABEL_1", "bored"], {"LABEL_1": "sadness", "bored": ""})
    assert mapping.targets == ("anger", "sadness", "")
    with pytest.raises(InvalidParameter, match="unknown labels"):
        LabelMapping.for_classes(["angry"], {"angry": "rage"})


def test_a_funasr_result_becomes_the_seven_label_distribution() -> None:
    mapping = LabelMapping.for_classes(EMOTION2VEC_LABELS)
    result = {
        "key": "clip-0",
        "labels": list(EMOTION2VEC_LABELS),
        "scores": [0.02, 0.01, 0.02, 0.05, 0.1, 0.0, 0.75, 0.05, 0.0],
    }
    label = labels_from_funasr_result(result, mapping)
    assert label.label == "sadness" and label.raw_label == "难过/sad"
    assert label.confidence == pytest.approx(0.75)
    with pytest.raises(ModelLoadError, match="not the model's"):
        labels_from_funasr_result({**result, "labels": list(reversed(EMOTION2VEC_LABELS))}, mapping)
