"""The answers the judges ask for, as JSON schemas, and the one strict parser of LLM replies.

The same pydantic model is the `json_schema` response format sent to servers that constrain
decoding and the validator of every reply, whatever the server did with the format. The parser reads
the whole reply or nothing: a JSON object (optionally inside one Markdown code fence) that validates,
or for MOS and A/B the bare integer the paper's prompts asked for. It never searches the text for a
number, which is how prometheus-eval #58 read the template's example score as every verdict; a reply
that contains the prompt's placeholders or instruction lines is reported as an echo, not parsed.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from evalsvc.errors import LLMRefused, LLMReplyEchoesTemplate, LLMReplyUnreadable
from evalsvc.llm_client import LLMReply


def _choice(*values: int) -> Any:
    """An integer that must be one of `values`: JSON `true`, `4.0` or `"4"` are not (pydantic's
    Literal[1, ...] would take `true` for 1). The schema is a plain enum, which every constrained
    decoder supports."""

    def check(value: int) -> int:
        if value not in values:
            raise ValueError(f"must be one of {', '.join(map(str, values))}")
        return value

    return Annotated[
        StrictInt, AfterValidator(check), WithJsonSchema({"type": "integer", "enum": list(values)})
    ]


Score = _choice(1, 2, 3, 4, 5)
Verdict = _choice(-1, 0, 1)
_FENCED = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)
_STRICT = ConfigDict(extra="forbid", strict=True)


class JudgeReply(BaseModel):
    """Base of the judges' answers; `bare_integer` names the field a bare-integer reply fills."""

    model_config = _STRICT
    bare_integer: ClassVar[re.Pattern[str] | None] = None
    bare_field: ClassVar[str] = ""


class MosReply(JudgeReply):
    score: Score
    bare_integer = re.compile(r"^[1-5]$")
    bare_field = "score"


class VerdictReply(JudgeReply):
    verdict: Verdict
    """1: Response A is better; -1: Response B is; 0: equally good."""
    bare_integer = re.compile(r"^(?:-1|0|1)$")
    bare_field = "verdict"


class DimensionScores(BaseModel):
    model_config = _STRICT
    NS: Score
    WA: Score
    EU: Score
    ES: Score


class AssessmentReply(JudgeReply):
    """The paper's Stage 3, in its order: captions, then scores, then the holistic assessment (schema
    property order is generation order under constrained decoding)."""

    query_emotion: str
    response_emotion: str
    scores: DimensionScores
    true_intent: str
    meets_need: str
    suggestions: list[str]

    @field_validator("query_emotion", "response_emotion", "true_intent", "meets_need")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("suggestions")
    @classmethod
    def _suggestions_not_blank(cls, value: list[str]) -> list[str]:
        kept = [item.strip() for item in value if item.strip()]
        if not kept:
            raise ValueError("must hold at least one suggestion")
        return kept


ReplyT = TypeVar("ReplyT", bound=JudgeReply)


def response_format(schema: type[JudgeReply]) -> dict[str, Any]:
    """The chat completions `response_format` of constrained decoding (OpenAI strict mode, vLLM)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": True},
    }


def parse_reply(reply: LLMReply, schema: type[ReplyT], echo_markers: tuple[str, ...]) -> ReplyT:
    """The validated answer, or an `LLMReplyError` (refused, echo, unreadable) saying why not."""
    if reply.refusal or reply.finish_reason == "content_filter":
        reason = reply.refusal or "the reply was stopped by the provider's content filter"
        raise LLMRefused(f"the LLM declined to judge: {reason[:200]}")
    text = (reply.text or "").strip()
    cut = " (it stopped at EVALSVC_LLM_MAX_TOKENS)" if reply.finish_reason == "length" else ""
    if not text:
        raise LLMReplyUnreadable(f"the LLM's reply is empty{cut}")
    echoed = next((marker for marker in echo_markers if marker in text), None)
    if echoed is not None:
        raise LLMReplyEchoesTemplate(
            f"the LLM's reply repeats the prompt's own text {echoed[:80]!r}: {text[:120]!r}"
        )
    fenced = _FENCED.match(text)
    body = fenced.group(1).strip() if fenced else text
    if schema.bare_integer is not None and schema.bare_integer.match(body):
        return schema.model_validate({schema.bare_field: int(body)})
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        raise LLMReplyUnreadable(f"the LLM's reply is not a JSON object{cut}: {text[:120]!r}") from None
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "reply"
        raise LLMReplyUnreadable(
            f"the LLM's reply does not match the {schema.__name__} format ({where}: {first['msg']}): {text[:120]!r}"
        ) from None
