"""LitServe's own OpenAI spec in front of the scripted judge: a third party's chat completions server.

    python -m tests.judges.litserve_openai --port PORT --log requests.jsonl

LitServe validates every request against its `ChatCompletionRequest` model (messages, temperature,
max_completion_tokens, response_format with its json_schema ...) and writes the response, usage
included, in its own code: the wire format on both sides is someone else's reading of the spec, not
ours. Each request as LitServe parsed it is appended to the log for the test to inspect.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import litserve as ls

from tests.judges.openai_server import judge_like


class ScriptedJudgeAPI(ls.LitAPI):
    def __init__(self, log_path: str) -> None:
        super().__init__()
        self.log_path = log_path

    def setup(self, device: str) -> None:
        pass

    def predict(self, request: Any) -> Iterator[dict[str, Any]]:
        body = request.model_dump(mode="json", by_alias=True, exclude_none=True)
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(body) + "\n")
        reply = judge_like(body, 0)
        prompt = "".join(message["content"] for message in body["messages"])
        yield {
            "role": "assistant",
            "content": reply.content,
            "prompt_tokens": len(prompt) // 4,
            "completion_tokens": len(reply.content or "") // 4,
            "total_tokens": 0,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    server = ls.LitServer(
        ScriptedJudgeAPI(args.log), spec=ls.OpenAISpec(), accelerator="cpu", workers_per_device=1
    )
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()
