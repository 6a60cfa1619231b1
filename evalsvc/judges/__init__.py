"""The paper's second judge: transcripts (Whisper), emotion labels (Emotion2Vec or any audio
classifier) and a text LLM behind any OpenAI-compatible API, as MOS, order-alternated A/B, and Stage 3
descriptive assessments: the model-running components. `evalsvc.judge_scoring` (JudgeService)
stores, caches and budgets them for the CLI, the HTTP API and the bulk workers (README "The LLM
judges"); the OpenAI-compatible client is `evalsvc.llm_client`.

Pipeline for a pair of clips: `WhisperTranscriber.transcribe` and `load_emotion_labeller(...).label`
once per clip (keyed by audio sha256 and the model's `provenance.key`), then `LLMJudge(spec,
client).judge_many([PairTexts(...)])`, whose results carry their ledger rows; `judge_fingerprint`
keys their cache, `estimate` / `estimate_unseen` price a run before it starts.

Heavy modules (torch, transformers) load only with the transcriber and the labeller: importing the
LLM side does not import them.
"""

from __future__ import annotations

from evalsvc.judges.emotions import EMOTION2VEC_LABELS, EMOTIONS, LABEL_TABLE, EmotionLabel, LabelMapping
from evalsvc.judges.estimate import JudgeEstimate, approx_tokens, estimate, estimate_unseen
from evalsvc.judges.fingerprint import JudgeFingerprint, judge_fingerprint
from evalsvc.judges.judges import (
    JUDGE_IDS,
    ABResult,
    Assessment,
    AssessmentResult,
    JudgeResult,
    JudgeSpec,
    LLMJudge,
    MosResult,
    PairTexts,
    judge_prompts,
)
from evalsvc.judges.ledger import (
    ABSummary,
    LedgerTotals,
    MosSummary,
    ledger_totals,
    summarize_ab,
    summarize_mos,
)
from evalsvc.judges.prompts import JUDGE_KINDS, LANGUAGES, PROMPT_VERSIONS, TurnInput
from evalsvc.judges.provenance import ModelProvenance
from evalsvc.llm_client import LLMCall, LLMClient, LLMConfig, LLMReply, Prices

__all__ = [
    "EMOTION2VEC_LABELS",
    "EMOTIONS",
    "JUDGE_IDS",
    "JUDGE_KINDS",
    "LABEL_TABLE",
    "LANGUAGES",
    "PROMPT_VERSIONS",
    "ABResult",
    "ABSummary",
    "Assessment",
    "AssessmentResult",
    "EmotionLabel",
    "JudgeEstimate",
    "JudgeFingerprint",
    "JudgeResult",
    "JudgeSpec",
    "LLMCall",
    "LLMClient",
    "LLMConfig",
    "LLMJudge",
    "LLMReply",
    "LabelMapping",
    "LedgerTotals",
    "ModelProvenance",
    "MosResult",
    "MosSummary",
    "PairTexts",
    "Prices",
    "TurnInput",
    "approx_tokens",
    "estimate",
    "estimate_unseen",
    "judge_fingerprint",
    "judge_prompts",
    "ledger_totals",
    "summarize_ab",
    "summarize_mos",
]
