"""The chat messages a generation server (vLLM) gets for one pair: the judge prompt, the two clips.

The system message is the judge's system text; the user message is the prompt's user turn as content
parts, `text` around two `input_audio` parts (base64 WAV, 32-bit float at 16 kHz: the exact samples
evalsvc decoded, with no second resampling or quantisation). Rendered with the checkpoint's chat
template this is the in-process prompt token for token (tests/served/test_served_prompt.py).

Checked against vLLM's source (github.com/vllm-project/vllm, `vllm/entrypoints/chat_utils.py` at
commit 001eadcf295d90aa0664963cd6a9d93f38a2f3da):

- `MM_PARSER_MAP["input_audio"]` takes the part's `input_audio` object; `parse_input_audio` makes it
  the data URL `data:audio/{format};base64,{data}` and passes it to `parse_audio`, the path an
  `audio_url` part takes (`MediaConnector.fetch_audio` decodes the bytes). So `format` is `wav` and
  `data` plain base64, no `data:` prefix.
- With a chat template that iterates over a message's content (Qwen3-Omni's does), the "openai"
  content format applies: `_parse_chat_message_content_part` (with `wrap_dicts`) hands the template
  the parts in order, text as `{"type": "text", "text": ...}` and each audio as `{"type": "audio"}`;
  the template writes `<|audio_start|><|audio_pad|><|audio_end|>` there, and the model's processor
  expands the pad to the clip's length.
- With a template that prints string content only (the "string" format), vLLM joins the text parts
  with newlines and puts every audio placeholder in front of the text unless the server runs with
  `--interleave-mm-strings` (`_get_full_multimodal_text_prompt`): the judge would hear another prompt.
  Hence the export carries the base checkpoint's own chat template over unchanged.
- vLLM's model registry maps the hub's `Qwen3OmniMoeForConditionalGeneration` to its thinker
  implementation (`qwen3_omni_moe_thinker`), which is what a merged export's config names.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import soundfile

from evalsvc.audio import SAMPLE_RATE
from evalsvc.engine.prompt import SYSTEM_TEXT, user_text_pieces
from evalsvc.engine.types import AudioPair


def judge_messages(pair: AudioPair) -> list[dict[str, Any]]:
    """The chat completions `messages` for one pair."""
    before, between, after = user_text_pieces()
    return [
        {"role": "system", "content": SYSTEM_TEXT},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": before},
                audio_part(pair.query.samples),
                {"type": "text", "text": between},
                audio_part(pair.response.samples),
                {"type": "text", "text": after},
            ],
        },
    ]


def audio_part(samples: np.ndarray) -> dict[str, Any]:
    """An `input_audio` content part holding `samples` (16 kHz mono) as a float WAV file."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode("ascii"), "format": "wav"},
    }
