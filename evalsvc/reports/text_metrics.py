"""Agreement of generated texts with reference texts: the paper's captioning metrics and SER accuracy.

    BLEU-1..4, METEOR, ROUGE-L, CIDEr-D   pycocoevalcap 1.2 (the MS-COCO caption evaluation code, the
                                          reference implementation these metrics are quoted from)
    SER accuracy                          scikit-learn: accuracy and unweighted (balanced) accuracy
    SPICE, SPIDEr, FENSE                  not computed: their models cannot be had offline (below)

Texts are tokenized as pycocoevalcap's evaluation does: Stanford's PTBTokenizer (the CoreNLP 3.4.1
jar pycocoevalcap ships, run with its flags: one line per text, lower-cased), then its punctuation
tokens removed. The jar is run here rather than through pycocoevalcap's wrapper, which writes its
temporary file into the installed package (failing on a read-only install) and lets the JVM write to
our stderr; the command and the punctuation list are the library's. pycocoevalcap's CIDEr is CIDEr-D
(clipped n-gram counts, Gaussian length penalty sigma 6, x10), with document frequencies from the
references given: over a handful of items it is not comparable to published corpus figures.

Java (8 or newer on PATH; Debian: `apt-get install default-jre-headless`) runs the tokenizer and
METEOR (its jar and paraphrase table come with pycocoevalcap). Without it, METEOR is reported as
unavailable with that reason, and BLEU, ROUGE-L and CIDEr-D are still computed, on a regular-expression
tokenization (`tokenizer` says so; values may differ slightly from PTB-tokenized ones).

Not available offline, and so reported as unavailable with the reason: SPICE (and SPIDEr, the mean of
CIDEr-D and SPICE) needs Stanford CoreNLP 3.6.0 and its models, which pycocoevalcap downloads from
stanford.edu on first use; FENSE needs a sentence-transformers model and a fluency-error detector
from a model hub. No package registry this project can reach ships them.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from evalsvc.engine.prompt import reflection_text
from evalsvc.errors import InvalidParameter

BLEU = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
METRICS = (*BLEU, "METEOR", "ROUGE-L", "CIDEr-D", "SPICE", "SPIDEr", "FENSE")
OFFLINE_UNAVAILABLE = {
    "SPICE": "needs Stanford CoreNLP 3.6.0 and its models (stanford-corenlp-3.6.0.jar and -models.jar), which "
    "pycocoevalcap downloads from stanford.edu on first use; no package registry this service can reach ships them",
    "SPIDEr": "the mean of CIDEr-D and SPICE; SPICE is unavailable",
    "FENSE": "needs the paraphrase-TinyBERT-L6-v2 sentence-transformers model and the FENSE fluency-error "
    "detector from a model hub; no package registry this service can reach ships them",
}
JAVA_HINT = "install a Java runtime (8 or newer) on PATH, e.g. `apt-get install default-jre-headless`"
_PTB_JAR = Path(ptbtokenizer.__file__).parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
_PUNCTUATION = frozenset(ptbtokenizer.PUNCTUATIONS)
_TIMEOUT_S = 600
_WORDS = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@dataclass(frozen=True)
class TextAgreement:
    """Corpus-level scores; a metric that could not be computed is in `unavailable`, with why."""

    count: int
    scores: dict[str, float]
    unavailable: dict[str, str]
    tokenizer: str
    """'ptb' (pycocoevalcap's), or 'regex' when Java is missing."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "scores": dict(self.scores),
            "unavailable": dict(self.unavailable),
            "tokenizer": self.tokenizer,
        }


def text_agreement(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]]) -> TextAgreement:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of `hypotheses` (one text each) against `references`
    (one text, or several, per hypothesis), computed over the whole corpus as pycocoevalcap does."""
    if len(hypotheses) != len(references):
        raise InvalidParameter(f"{len(hypotheses)} hypotheses but {len(references)} reference entries")
    if not hypotheses:
        raise InvalidParameter("no texts to compare")
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    if any(not r for r in refs):
        raise InvalidParameter("every hypothesis needs at least one reference")
    unavailable = dict(OFFLINE_UNAVAILABLE)
    texts = [*hypotheses, *(text for group in refs for text in group)]
    try:
        tokens, tokenizer = ptb_tokenize(texts), "ptb"
    except JavaUnavailable as missing:
        tokens, tokenizer = [_regex_tokens(text) for text in texts], "regex"
        unavailable["METEOR"] = str(missing)
    res = {i: [tokens[i]] for i in range(len(hypotheses))}
    gts: dict[int, list[str]] = {}
    position = len(hypotheses)
    for i, group in enumerate(refs):
        gts[i] = tokens[position : position + len(group)]
        position += len(group)
    scores: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores |= {name: float(value) for name, value in zip(BLEU, bleu, strict=True)}
    if tokenizer == "ptb":
        try:
            scores["METEOR"] = meteor_score(gts, res)
        except JavaUnavailable as failed:
            unavailable["METEOR"] = str(failed)
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    return TextAgreement(len(hypotheses), scores, unavailable, tokenizer)


def ser_accuracy(predicted: Sequence[str], reference: Sequence[str]) -> dict[str, Any]:
    """Accuracy and unweighted accuracy (mean per-class recall, the SER literature's UA) of emotion
    labels, compared case-insensitively without surrounding spaces or a final full stop."""
    if len(predicted) != len(reference):
        raise InvalidParameter(f"{len(predicted)} predicted labels but {len(reference)} reference labels")
    if not reference:
        raise InvalidParameter("no labels to compare")
    guess = [normalise_label(label) for label in predicted]
    truth = [normalise_label(label) for label in reference]
    with warnings.catch_warnings():
        # a predicted label no reference has is simply wrong, not a reason to warn
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        unweighted = float(balanced_accuracy_score(truth, guess))
    return {
        "count": len(truth),
        "accuracy": float(accuracy_score(truth, guess)),
        "unweighted_accuracy": unweighted,
        "labels": sorted(set(truth)),
    }


def normalise_label(label: str) -> str:
    return label.strip().rstrip(".!").strip().casefold()


@dataclass(frozen=True)
class KeyedTexts:
    """Hypotheses and references matched by key (item key or id); what the `report text-agreement`
    command computes on."""

    keys: list[str]
    hypotheses: list[str]
    references: list[list[str]]
    without_reference: list[str] = field(default_factory=list)
    without_hypothesis: list[str] = field(default_factory=list)


def match_by_key(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]], *, strip_score_lines: bool = True
) -> KeyedTexts:
    """Pair each hypothesis with the references of its key. With `strip_score_lines`, a final
    `SCORES: ...` line (the judge's verdict, numbers that would inflate n-gram overlap) is removed from
    both sides: the assessment's prose is what is compared."""

    def text(value: str) -> str:
        return reflection_text(value) if strip_score_lines else value.strip()

    keys = sorted(key for key in hypotheses if key in references)
    if not keys:
        raise InvalidParameter(
            f"no key has both a hypothesis and a reference ({len(hypotheses)} hypotheses, {len(references)} "
            "references): do the references use the run's item keys?"
        )
    return KeyedTexts(
        keys=keys,
        hypotheses=[text(hypotheses[key]) for key in keys],
        references=[[text(ref) for ref in references[key]] for key in keys],
        without_reference=sorted(set(hypotheses) - set(references)),
        without_hypothesis=sorted(set(references) - set(hypotheses)),
    )


def keyed_text_agreement(
    hypotheses: Mapping[str, str], references: Mapping[str, Sequence[str]], *, strip_score_lines: bool = True
) -> dict[str, Any]:
    """`text_agreement` over the keys both sides have, with the keys left out of it."""
    matched = match_by_key(hypotheses, references, strip_score_lines=strip_score_lines)
    result = text_agreement(matched.hypotheses, matched.references)
    return result.to_dict() | {
        "without_reference": matched.without_reference,
        "without_hypothesis": matched.without_hypothesis,
    }


class JavaUnavailable(RuntimeError):
    """Java is missing or failed; the message says which, and how to install it."""


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """pycocoevalcap's tokenization of each text: PTBTokenizer (lower-cased), punctuation removed."""
    java = _java()
    with tempfile.TemporaryDirectory(prefix="evalsvc-ptb-") as directory:
        source = Path(directory) / "texts.txt"
        source.write_text("\n".join(_one_line(text) for text in texts), encoding="utf-8")
        command = [
            java,
            "-Dfile.encoding=UTF-8",
            "-cp",
            str(_PTB_JAR),
            "edu.stanford.nlp.process.PTBTokenizer",
        ]
        command += ["-preserveLines", "-lowerCase", str(source)]
        try:
            done = subprocess.run(command, capture_output=True, timeout=_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise JavaUnavailable(f"the PTB tokenizer could not run: {error}") from error
    lines = done.stdout.decode("utf-8", errors="replace").split("\n")
    if done.returncode != 0 or len(lines) < len(texts):
        detail = done.stderr.decode("utf-8", errors="replace").strip()[-500:]
        raise JavaUnavailable(f"the PTB tokenizer failed (exit {done.returncode}): {detail}")
    return [
        " ".join(word for word in line.rstrip().split(" ") if word and word not in _PUNCTUATION)
        for line in lines[: len(texts)]
    ]


def meteor_score(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    """METEOR 1.5 through pycocoevalcap's wrapper, in one JVM kept for the process (loading its
    paraphrase table takes seconds)."""
    with _METEOR.use() as meteor:
        try:
            return float(meteor.compute_score(_no_separators(gts), _no_separators(res))[0])
        except (OSError, ValueError) as error:
            _METEOR.discard()
            raise JavaUnavailable(f"METEOR failed: {error}") from error


class _MeteorProcess:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meteor: Meteor | None = None

    @contextlib.contextmanager
    def use(self) -> Iterator[Meteor]:
        with self._lock:
            if self._meteor is None or self._meteor.meteor_p.poll() is not None:
                _java()
                try:
                    self._meteor = Meteor()
                except OSError as error:
                    raise JavaUnavailable(f"METEOR could not start: {error}") from error
            yield self._meteor

    def discard(self) -> None:
        if self._meteor is not None:
            self._meteor.meteor_p.kill()
            self._meteor = None


_METEOR = _MeteorProcess()


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise JavaUnavailable(f"METEOR and the PTB tokenizer need Java, which was not found: {JAVA_HINT}")
    return java


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _regex_tokens(text: str) -> str:
    """Without Java: words (letters and digits, inner apostrophes kept), lower-cased; punctuation,
    which the PTB path removes, is never a token."""
    return " ".join(_WORDS.findall(text.lower()))


def _no_separators(texts: dict[int, list[str]]) -> dict[int, list[str]]:
    """METEOR's protocol separates fields with '|||'; no text may hold it."""
    return {
        key: [" ".join(text.replace("|||", " ").split()) for text in values] for key, values in texts.items()
    }


__all__ = [
    "METRICS",
    "JavaUnavailable",
    "KeyedTexts",
    "TextAgreement",
    "keyed_text_agreement",
    "match_by_key",
    "normalise_label",
    "ser_accuracy",
    "text_agreement",
]
