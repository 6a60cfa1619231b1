"""GLM-4-Voice's own markup, for rows whose user turn is the spoken query as speech tokens.

GLM-4-Voice (THUDM/glm-4-voice-9b, the paper's ReEmpathy base) reads no audio file: its tokenizer
holds the 16,384 speech tokens `<|audio_0|>` ... `<|audio_16383|>` of GLM-4-Voice-Tokenizer (12.5 Hz)
beside GLM-4's `<|system|>`, `<|user|>`, `<|assistant|>` and `<|begin_of_audio|>` / `<|end_of_audio|>`.
Its reference inference (GLM-4-Voice `web_demo.py`) sends a spoken query as

    <|system|>\\n{GLM4_VOICE_SYSTEM}<|user|>\\n<|begin_of_audio|><|audio_N|>...<|end_of_audio|><|assistant|>

and the model answers 13 text tokens, 26 speech tokens, repeated. LLaMA-Factory's `glm4` template
renders a sharegpt row as `[gMASK]<sop><|system|>\\n{system}<|user|>\\n{user}<|assistant|>\\n{answer}`,
which is that prompt once the user turn is `speech_query(tokens)` and the system message is
`GLM4_VOICE_SYSTEM`. (The demo's prompt adds the mode tag `streaming_transcription` after
`<|assistant|>`; the template writes a newline there, so infer with the template the model was
trained with.) The template takes no audio input, so these rows have no `audios` column.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalsvc.errors import InvalidParameter
from evalsvc.training.codec import SPEECH_TOKEN

LLAMAFACTORY_TEMPLATE = "glm4"
BEGIN_OF_AUDIO = "<|begin_of_audio|>"
END_OF_AUDIO = "<|end_of_audio|>"
SPEECH_VOCABULARY = 16_384
# GLM-4-Voice web_demo.py's system prompt for a spoken instruction (verbatim, trailing space included).
GLM4_VOICE_SYSTEM = (
    "User will provide you with a speech instruction. Do it step by step. First, think about the "
    "instruction and respond in a interleaved manner, with 13 text token followed by 26 audio tokens. "
)


def speech_query(tokens: Sequence[int], where: str) -> str:
    """The spoken query as GLM-4-Voice reads it: its speech tokens between the audio markers. A token
    beyond GLM-4-Voice's vocabulary is an error (`where` names the item)."""
    too_large = [token for token in tokens if token >= SPEECH_VOCABULARY]
    if too_large:
        raise InvalidParameter(
            f"{where}: speech token {too_large[0]} is not a GLM-4-Voice token (0-{SPEECH_VOCABULARY - 1})"
        )
    return BEGIN_OF_AUDIO + "".join(SPEECH_TOKEN.format(token) for token in tokens) + END_OF_AUDIO
