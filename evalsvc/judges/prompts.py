"""The LLM judges' prompts, English and Chinese, versioned; rendered as chat messages.

Facts from the paper (arXiv 2601.18281, Figures 7, 9, 10, written in Chinese): the judge is a
professional single-turn dialogue empathy assessor; it reads the user query and the system response
(transcripts), and with Emotion2Vec an emotion label for each; it weighs four dimensions with
high-score (4-5) and low-score (1-2) criteria; MOS is one integer on a comprehensive 1-5 scale, A/B
is 1, 0 or -1 for the response against the reference; Stage 3 writes an emotion caption per turn,
four scores, then a holistic assessment (true intention, whether the need is met, suggestions).
The wording below is evalsvc's own.

Two rules keep replies readable:
- Transcripts enter as JSON string literals (quoted, escaped), so no transcript can close a section
  or pose as an instruction line.
- The answer format is shown with placeholders in angle brackets that are not valid answers
  (`<one integer from 1 to 5>`): a model that echoes the format cannot be read as a score, and the
  placeholders and instruction lines are what `RenderedPrompt.echo_markers` looks for in a reply.

Any change to a text below must change its version in PROMPT_VERSIONS (a test pins the digests).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from evalsvc.judges.emotions import EMOTION_NAMES_ZH, EmotionLabel

JudgeKind = Literal["llm-mos", "llm-ab", "llm-assessment"]
Language = Literal["en", "zh"]
JUDGE_KINDS: tuple[JudgeKind, ...] = ("llm-mos", "llm-ab", "llm-assessment")
LANGUAGES: tuple[Language, ...] = ("en", "zh")

PROMPT_VERSIONS: dict[JudgeKind, str] = {
    "llm-mos": "llm-mos-v1",
    "llm-ab": "llm-ab-v1",
    "llm-assessment": "llm-assessment-v1",
}

_SYSTEM = {
    "en": "You are a professional expert in assessing empathy in single-turn dialogue. You read the transcript "
    "of what a user said and of how a spoken dialogue system answered, and you judge the answer strictly by "
    "the criteria you are given.",
    "zh": "你是一名专业的单轮对话共情评估专家。你将读到用户所说内容的转写文本，以及语音对话系统回复的转写文本，"
    "并严格按照给定的标准评判该回复。",
}

_CRITERIA = {
    "en": (
        "1. Need support (NS). High (4-5): identifies the user's core need and answers it with substance. "
        "Low (1-2): drifts away from the need, or answers perfunctorily.\n"
        "2. Wording appropriateness (WA). High (4-5): natural, fluent and polite wording. Low (1-2): stiff, "
        "confused or inappropriate wording.\n"
        "3. Emotion understanding (EU). High (4-5): recognises the user's explicit and implicit emotions. "
        "Low (1-2): misjudges or ignores them.\n"
        "4. Emotional support (ES). High (4-5): comforts, encourages or resonates with the user. Low (1-2): "
        "indifferent, or leaves the user feeling worse."
    ),
    "zh": (
        "1. 需求支持（NS）。高分（4-5）：准确识别用户的核心需求，并给出有实质内容的回应。低分（1-2）：偏离用户需求，"
        "或敷衍了事。\n"
        "2. 措辞得当（WA）。高分（4-5）：表达自然、流畅、礼貌。低分（1-2）：表达生硬、混乱或不得体。\n"
        "3. 情绪理解（EU）。高分（4-5）：识别出用户显性和隐性的情绪。低分（1-2）：误判或忽视用户的情绪。\n"
        "4. 情感支持（ES）。高分（4-5）：给予安慰、鼓励或共鸣。低分（1-2）：态度冷漠，或让用户感觉更糟。"
    ),
}

_ONLY_JSON = {
    "en": "Reply with this JSON object only, with no other text:",
    "zh": "只输出下面这个 JSON 对象，不要输出任何其他文字：",
}

_MOS_TASK = {
    "en": "Assess how empathetic the system response is to the user query. Weigh four dimensions:",
    "zh": "请评估系统回复对用户提问的共情程度。请综合考虑以下四个维度：",
}
_MOS_SCALE = {
    "en": (
        "Then rate the response as a whole on one comprehensive 1-5 scale:\n"
        "5: high-EQ empathy: meets the need and the emotion fully, warmly and naturally.\n"
        "4: clear empathy, with small gaps in content or tone.\n"
        "3: adequate but neutral: helpful or polite, without real emotional engagement.\n"
        "2: weak empathy: misses the emotion or the need, or sounds mechanical.\n"
        "1: negative empathy: dismissive, hurtful or inappropriate."
    ),
    "zh": (
        "然后在 1-5 分的综合量表上对回复整体打分：\n"
        "5：高情商共情：充分、温暖、自然地回应了用户的需求和情绪。\n"
        "4：明显的共情，内容或语气上有小的不足。\n"
        "3：合格但中性：有帮助或有礼貌，但没有真正的情感投入。\n"
        "2：共情较弱：忽略了情绪或需求，或显得机械。\n"
        "1：负面共情：轻视、伤人或不得体。"
    ),
}
_MOS_FORMAT = {
    "en": '{"score": <one integer from 1 to 5>}',
    "zh": '{"score": <1 到 5 之间的一个整数>}',
}

_AB_TASK = {
    "en": "Two system responses to the same user query are shown: Response A and Response B. Compare them "
    "on the four dimensions below and decide which one is more empathetic overall.",
    "zh": "下面是系统对同一用户提问的两个回复：回复 A 和回复 B。请按以下四个维度比较它们，判断哪一个整体上更具共情。",
}
_AB_FORMAT = {
    "en": '{"verdict": <1 if Response A is better, -1 if Response B is better, 0 if they are equally good>}',
    "zh": '{"verdict": <回复 A 更好为 1，回复 B 更好为 -1，两者相当为 0>}',
}

_ASSESSMENT_TASK = {
    "en": (
        "Assess the system response in three steps.\n"
        "Step 1, emotion captions: in one or two sentences each, describe how the user feels and how the "
        "system response comes across emotionally, from the words{annotations}.\n"
        "Step 2, scores: rate the response from 1 to 5 on each of these dimensions:"
    ),
    "zh": (
        "请分三步评估系统回复。\n"
        "第一步，情绪描述：根据文字{annotations}，各用一两句话描述用户的情绪，以及系统回复在情绪上给人的感受。\n"
        "第二步，评分：按以下标准在每个维度上给出 1-5 分："
    ),
}
_ASSESSMENT_ANNOTATIONS = {"en": " and the emotion annotations", "zh": "和情绪标注"}
_ASSESSMENT_HOLISTIC = {
    "en": "Step 3, holistic assessment: state the user's true intention, whether the response meets the "
    "user's empathetic need and why, and actionable suggestions that would make it more empathetic.",
    "zh": "第三步，整体评估：说明用户的真实意图、回复是否满足了用户的共情需求及原因，并给出能让回复更具共情的可操作建议。",
}
_ASSESSMENT_FORMAT = {
    "en": (
        '{"query_emotion": "<caption of the user\'s emotion>", '
        '"response_emotion": "<caption of the emotion the response conveys>", '
        '"scores": {"NS": <integer 1-5>, "WA": <integer 1-5>, "EU": <integer 1-5>, "ES": <integer 1-5>}, '
        '"true_intent": "<the user\'s true intention>", '
        '"meets_need": "<whether and why the response meets the empathetic need>", '
        '"suggestions": ["<an actionable suggestion>"]}'
    ),
    "zh": (
        '{"query_emotion": "<用户情绪描述>", '
        '"response_emotion": "<回复传达的情绪描述>", '
        '"scores": {"NS": <1-5 的整数>, "WA": <1-5 的整数>, "EU": <1-5 的整数>, "ES": <1-5 的整数>}, '
        '"true_intent": "<用户的真实意图>", '
        '"meets_need": "<回复是否满足共情需求及原因>", '
        '"suggestions": ["<一条可操作的建议>"]}'
    ),
}

_INPUT_NAMES = {
    "en": {
        "query": "User query",
        "query_emotion": "User emotion label",
        "response": "System response",
        "response_emotion": "System response emotion label",
        "a": "Response A",
        "a_emotion": "Response A emotion label",
        "b": "Response B",
        "b_emotion": "Response B emotion label",
        "note": "Transcripts are given as quoted strings.",
    },
    "zh": {
        "query": "用户提问",
        "query_emotion": "用户情绪标签",
        "response": "系统回复",
        "response_emotion": "系统回复情绪标签",
        "a": "回复 A",
        "a_emotion": "回复 A 情绪标签",
        "b": "回复 B",
        "b_emotion": "回复 B 情绪标签",
        "note": "转写文本以带引号的字符串给出。",
    },
}
_SEPARATOR = {"en": ": ", "zh": "："}


@dataclass(frozen=True)
class TurnInput:
    """What the LLM reads of one turn: its transcript and, for the +emotion judges, its label."""

    transcript: str
    emotion: EmotionLabel | None = None


@dataclass(frozen=True)
class RenderedPrompt:
    messages: tuple[dict[str, str], ...]
    echo_markers: tuple[str, ...]
    """Placeholders and instruction lines of the template: a reply containing one echoes the prompt."""


def render_mos(
    query: TurnInput, response: TurnInput, language: Language, with_emotion: bool
) -> RenderedPrompt:
    inputs = [("query", query), ("response", response)]
    instructions = [_MOS_TASK[language], _CRITERIA[language], _MOS_SCALE[language]]
    return _render(language, inputs, with_emotion, instructions, _MOS_FORMAT[language])


def render_ab(
    query: TurnInput, first: TurnInput, second: TurnInput, language: Language, with_emotion: bool
) -> RenderedPrompt:
    """`first` is shown as Response A, `second` as Response B (the judge calls it in both orders)."""
    inputs = [("query", query), ("a", first), ("b", second)]
    instructions = [_AB_TASK[language], _CRITERIA[language]]
    return _render(language, inputs, with_emotion, instructions, _AB_FORMAT[language])


def render_assessment(
    query: TurnInput, response: TurnInput, language: Language, with_emotion: bool
) -> RenderedPrompt:
    inputs = [("query", query), ("response", response)]
    task = _ASSESSMENT_TASK[language].format(
        annotations=_ASSESSMENT_ANNOTATIONS[language] if with_emotion else ""
    )
    instructions = [task, _CRITERIA[language], _ASSESSMENT_HOLISTIC[language]]
    return _render(language, inputs, with_emotion, instructions, _ASSESSMENT_FORMAT[language])


def emotion_name(emotion: EmotionLabel, language: Language) -> str:
    return EMOTION_NAMES_ZH[emotion.label] if language == "zh" else emotion.label


def prompt_digest(kind: JudgeKind, language: Language, with_emotion: bool) -> str:
    """Hash of the prompt rendered on fixed inputs: what the tests pin to each version."""
    sample = TurnInput("<transcript>", EmotionLabel("neutral", 1.0, {"neutral": 1.0}, "neutral"))
    if kind == "llm-mos":
        rendered = render_mos(sample, sample, language, with_emotion)
    elif kind == "llm-ab":
        rendered = render_ab(sample, sample, sample, language, with_emotion)
    else:
        rendered = render_assessment(sample, sample, language, with_emotion)
    return hashlib.sha256(json.dumps(rendered.messages, ensure_ascii=False).encode()).hexdigest()


def _render(
    language: Language,
    inputs: list[tuple[str, TurnInput]],
    with_emotion: bool,
    instructions: list[str],
    answer_format: str,
) -> RenderedPrompt:
    names = _INPUT_NAMES[language]
    separator = _SEPARATOR[language]
    lines = [names["note"]]
    for role, turn in inputs:
        lines.append(f"{names[role]}{separator}{json.dumps(turn.transcript, ensure_ascii=False)}")
        if with_emotion:
            if turn.emotion is None:
                raise ValueError(f"the {role} turn has no emotion label")
            lines.append(f"{names[role + '_emotion']}{separator}{emotion_name(turn.emotion, language)}")
    user = "\n\n".join([*instructions, "\n".join(lines), f"{_ONLY_JSON[language]}\n{answer_format}"])
    messages = ({"role": "system", "content": _SYSTEM[language]}, {"role": "user", "content": user})
    return RenderedPrompt(messages, _echo_markers([_SYSTEM[language], *instructions], answer_format))


def _echo_markers(instructions: list[str], answer_format: str) -> tuple[str, ...]:
    placeholders = []
    rest = answer_format
    while "<" in rest and ">" in rest.split("<", 1)[1]:
        inside, rest = rest.split("<", 1)[1].split(">", 1)
        placeholders.append(f"<{inside}>")
    # Whole instruction lines long enough not to occur in a genuine answer by chance.
    lines = [line.strip() for text in instructions for line in text.splitlines() if len(line.strip()) >= 40]
    return tuple(dict.fromkeys([*placeholders, *lines]))
