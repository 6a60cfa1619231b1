"""The paper's seven emotion labels and the table that maps classifier label names onto them.

The paper gives the LLM judge one Emotion2Vec-Large label per turn. Classifiers name their classes in
many ways (Emotion2Vec's bilingual '生气/angry', IEMOCAP's 'ang', RAVDESS's 'calm', 'joy' ...), so every
checkpoint's `id2label` goes through one table, and a checkpoint whose names the table does not know
is refused at load rather than having its labels silently dropped.

Mapping table (names are compared in lower case; for 'xx/name' only the part after the slash):

| paper label | classifier names                                                        |
|-------------|-------------------------------------------------------------------------|
| anger       | anger, angry, ang, mad                                                  |
| disgust     | disgust, disgusted, dis                                                 |
| fear        | fear, fearful, fea, afraid, scared                                      |
| happiness   | happiness, happy, hap, joy, joyful, excited, exc                        |
| neutral     | neutral, neu, calm                                                      |
| sadness     | sadness, sad, sa, sorrow                                                |
| surprise    | surprise, surprised, sur, su, ps (pleasant surprise)                    |
| (dropped)   | other, unknown, unk, <unk>, contempt, boredom, frustration, frustrated  |

'calm' and 'excited' follow the common RAVDESS / IEMOCAP practice of merging them into neutral and
happiness. A dropped class's probability is left out and the rest renormalised: the label is the
most probable of the seven. EVALSVC_EMOTION_LABEL_MAP adds names (or overrides these).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evalsvc.errors import EmotionLabelsUnmapped, InvalidParameter

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
"""The paper's labels, in its order."""

# How the prompts name each label (the Chinese prompt is the paper's language).
EMOTION_NAMES_ZH: dict[str, str] = {
    "anger": "愤怒",
    "disgust": "厌恶",
    "fear": "恐惧",
    "happiness": "开心",
    "neutral": "中性",
    "sadness": "悲伤",
    "surprise": "惊讶",
}

_DROPPED = ""
LABEL_TABLE: dict[str, str] = {
    **dict.fromkeys(("anger", "angry", "ang", "mad"), "anger"),
    **dict.fromkeys(("disgust", "disgusted", "dis"), "disgust"),
    **dict.fromkeys(("fear", "fearful", "fea", "afraid", "scared"), "fear"),
    **dict.fromkeys(("happiness", "happy", "hap", "joy", "joyful", "excited", "exc"), "happiness"),
    **dict.fromkeys(("neutral", "neu", "calm"), "neutral"),
    **dict.fromkeys(("sadness", "sad", "sa", "sorrow"), "sadness"),
    **dict.fromkeys(("surprise", "surprised", "sur", "su", "ps"), "surprise"),
    **dict.fromkeys(
        ("other", "unknown", "unk", "<unk>", "contempt", "boredom", "frustration", "frustrated"), _DROPPED
    ),
}

EMOTION2VEC_LABELS: tuple[str, ...] = (
    "生气/angry",
    "厌恶/disgusted",
    "恐惧/fearful",
    "开心/happy",
    "中立/neutral",
    "其他/other",
    "难过/sad",
    "吃惊/surprised",
    "<unk>",
)
"""The nine classes of emotion2vec_plus_{seed,base,large}, as FunASR names them in its results."""


@dataclass(frozen=True)
class EmotionLabel:
    """One turn's emotion: the most probable of the seven, with the distribution it was read from."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    """Over the seven labels, renormalised after dropped classes; sums to 1."""
    raw_label: str
    """The classifier's own most probable class, before mapping (provenance)."""

    def to_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities),
            "raw_label": self.raw_label,
        }


@dataclass(frozen=True)
class LabelMapping:
    """A classifier's classes (in index order) and the paper label each one counts for ('' dropped)."""

    classes: tuple[str, ...]
    targets: tuple[str, ...]

    @classmethod
    def for_classes(cls, classes: Sequence[str], overrides: Mapping[str, str] | None = None) -> LabelMapping:
        """Map every class or refuse the checkpoint: an unknown name would lose its probability mass."""
        table = LABEL_TABLE | _checked_overrides(overrides or {})
        targets, unknown = [], []
        for name in classes:
            target = table.get(_key(name))
            if target is None:
                unknown.append(name)
            targets.append(target or _DROPPED)
        if unknown:
            raise EmotionLabelsUnmapped(
                f"the emotion classifier's labels {unknown} are not in the mapping table; map each onto "
                f"one of {', '.join(EMOTIONS)} (or '' to drop it) with EVALSVC_EMOTION_LABEL_MAP, e.g. "
                f'\'{{"{unknown[0]}": "neutral"}}\''
            )
        if not any(targets):
            raise EmotionLabelsUnmapped(
                f"none of the emotion classifier's labels {list(classes)} is an emotion"
            )
        return cls(tuple(classes), tuple(targets))

    def collapse(self, probabilities: Sequence[float]) -> EmotionLabel:
        """The seven-label distribution and label from the classifier's own class probabilities."""
        if len(probabilities) != len(self.classes):
            raise ValueError(f"{len(probabilities)} probabilities for {len(self.classes)} classes")
        merged = dict.fromkeys(EMOTIONS, 0.0)
        for target, probability in zip(self.targets, probabilities, strict=True):
            if target:
                merged[target] += float(probability)
        total = sum(merged.values())
        if total > 0:
            merged = {name: value / total for name, value in merged.items()}
        else:  # all mass on dropped classes: no evidence either way
            merged = dict.fromkeys(EMOTIONS, 1.0 / len(EMOTIONS))
        label = max(EMOTIONS, key=lambda name: merged[name])  # ties: the paper's order
        raw_index = max(range(len(self.classes)), key=lambda index: probabilities[index])
        return EmotionLabel(label, merged[label], merged, self.classes[raw_index])


def _key(name: str) -> str:
    """'生气/angry' -> 'angry'; 'Happy' -> 'happy'."""
    return name.rsplit("/", 1)[-1].strip().lower()


def _checked_overrides(overrides: Mapping[str, str]) -> dict[str, str]:
    bad = {name: target for name, target in overrides.items() if target not in (*EMOTIONS, _DROPPED)}
    if bad:
        raise InvalidParameter(
            f"EVALSVC_EMOTION_LABEL_MAP maps {bad} onto unknown labels; use one of {', '.join(EMOTIONS)} or ''"
        )
    return {_key(name): target for name, target in overrides.items()}
