"""Back-pressure and size limits, as pure-ASGI middlewares that answer before a body is read.

- In-flight bound (429): LitServe's request queue is unbounded, so under overload every request
  would wait and then time out. Instead, scoring requests beyond `max_in_flight` are refused at once
  with 429 and Retry-After, which clients back off on. The counter is one shared integer, so the
  bound holds for all API-server processes together.
- Payload limit (413): a declared Content-Length over the limit is refused before a byte of the body
  is read; a body without one (chunked) is counted as it streams and cut off at the limit.
"""

from __future__ import annotations

import multiprocessing

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evalsvc.api.responses import send_error
from evalsvc.errors import Overloaded, PayloadTooLarge

SCORING_PATHS = frozenset({"/v1/score"})


class InFlightCounter:
    """Scoring requests being served now, across every process forked after its creation."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._value = multiprocessing.get_context("spawn").Value("i", 0)

    def try_acquire(self) -> bool:
        with self._value.get_lock():
            if self._value.value >= self.bound:
                return False
            self._value.value += 1
            return True

    def release(self) -> None:
        with self._value.get_lock():
            self._value.value -= 1

    @property
    def current(self) -> int:
        return int(self._value.value)


class InFlightLimitMiddleware:
    def __init__(self, app: ASGIApp, counter: InFlightCounter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SCORING_PATHS:
            await self.app(scope, receive, send)
            return
        if not self.counter.try_acquire():
            message = f"more than {self.counter.bound} scoring requests in flight; retry shortly"
            await send_error(send, Overloaded(message))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.release()


class PayloadLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"request body over the limit of {self.max_bytes} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, too_large)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise too_large  # answered by the app's EvalsvcError handler
            return message

        await self.app(scope, counted, send)
