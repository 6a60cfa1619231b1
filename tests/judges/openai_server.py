"""A scripted OpenAI-compatible chat completions server on loopback, for tests and bench/.

It speaks the wire format (`POST /v1/chat/completions`, `GET /v1/models`, OpenAI-style error bodies,
Retry-After headers) over real HTTP through uvicorn, so the `openai` client's own request building,
retries and response parsing are what the tests exercise. What it answers is up to a script: the
default one reads the judge prompts like a well-behaved judge (a response containing GOOD is
better), and tests replace it to produce refusals, garbage, echoes, 429 storms, timeouts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MARK_GOOD = "GOOD"
_LINE = re.compile(r'^(User query|System response|Response A|Response B): (".*")$', re.MULTILINE)


@dataclass(frozen=True)
class Reply:
    content: str | None
    refusal: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class Failure:
    status: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Answer nothing for this long (longer than the client's timeout)."""

    seconds: float


Script = Callable[[dict[str, Any], int], Reply | Failure | Hang]
"""(request body, 0-based number of the request) -> what to answer."""


def turns(body: dict[str, Any]) -> dict[str, str]:
    """The transcripts in an English judge prompt, by their label ('User query', 'Response A', ...)."""
    return {label: json.loads(value) for label, value in _LINE.findall(body["messages"][-1]["content"])}


def judge_like(body: dict[str, Any], _: int) -> Reply:
    """Answers as a consistent judge: a response whose transcript contains GOOD is the better one."""
    prompt = body["messages"][-1]["content"]
    text = turns(body)
    if '{"verdict":' in prompt:
        a, b = MARK_GOOD in text["Response A"], MARK_GOOD in text["Response B"]
        return Reply(json.dumps({"verdict": 1 if a and not b else -1 if b and not a else 0}))
    good = MARK_GOOD in text.get("System response", "")
    if '"query_emotion"' not in prompt:
        return Reply(json.dumps({"score": 5 if good else 2}))
    level = 5 if good else 2
    return Reply(
        json.dumps(
            {
                "query_emotion": "The user sounds worried and tired.",
                "response_emotion": "Warm and calm." if good else "Flat and distant.",
                "scores": {"NS": level, "WA": level - 1, "EU": level, "ES": level - 1},
                "true_intent": "They want reassurance and a next step.",
                "meets_need": "Yes: it acknowledges the worry." if good else "No: it ignores the worry.",
                "suggestions": ["Name the feeling.", "Offer one concrete next step."],
            }
        )
    )


class ScriptedOpenAI:
    """The app plus what it received; `requests` holds every request body in arrival order."""

    def __init__(
        self,
        script: Script = judge_like,
        *,
        models: tuple[str, ...] = ("judge-model",),
        latency_s: float = 0.0,
    ) -> None:
        self.script = script
        self.models = models
        self.latency_s = latency_s
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._counter = itertools.count()
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self.app.get("/v1/models")(self._models)

    async def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "t"} for m in self.models],
        }

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("authorization"))
        answer = self.script(body, next(self._counter))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if isinstance(answer, Hang):
                await asyncio.sleep(answer.seconds)
                answer = Failure(504, "hung")
        finally:
            self.in_flight -= 1
        if isinstance(answer, Failure):
            error = {"error": {"message": answer.message, "type": "scripted", "code": None}}
            return JSONResponse(error, status_code=answer.status, headers=answer.headers)
        prompt_text = "".join(_text(message["content"]) for message in body["messages"])
        content = answer.content or ""
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "system_fingerprint": "fp_scripted",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": answer.content,
                            "refusal": answer.refusal,
                        },
                        "finish_reason": answer.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": answer.prompt_tokens
                    if answer.prompt_tokens is not None
                    else len(prompt_text) // 4,
                    "completion_tokens": answer.completion_tokens
                    if answer.completion_tokens is not None
                    else max(1, len(content) // 4),
                    "total_tokens": 0,
                },
            }
        )


def _text(content: str | list[dict[str, Any]]) -> str:
    """A message's text: the string, or its text parts (audio parts count for nothing)."""
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


@contextmanager
def serving(server: ScriptedOpenAI) -> Iterator[str]:
    """Run the app on a free loopback port in a thread; yields its base URL (ending in /v1)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(
        uvicorn.Config(
            server.app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the scripted OpenAI server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
