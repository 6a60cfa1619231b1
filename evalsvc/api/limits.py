"""Back-pressure, size limits and read deadlines of the HTTP tier.

- In-flight bound (429): LitServe's request queue is unbounded, so under overload every request
  would wait and then time out. Instead, scoring requests beyond `max_in_flight` (or beyond one
  tenant's share, `max_in_flight_per_tenant`) are refused at once with 429 and Retry-After, which
  clients back off on. A slot is taken only once the request has been read (`InFlightSlots.slot`,
  called by the route): a client that uploads slowly holds a connection, never a slot, so it cannot
  shut other clients out. The slots live in one shared array, so the bounds hold for all API-server
  processes together.
- Payload limit (413): a declared Content-Length over the limit is refused before a byte of the body
  is read; a body without one (chunked) is counted as it streams and cut off at the limit.
- Body deadline (408): a body must arrive within `body_timeout_s`, extended by a second per
  `body_min_bytes_per_s` bytes received (the rule of Apache's mod_reqtimeout): a large upload on a
  slow but honest link goes through, a body sent a byte every few seconds does not hold its
  connection open for ever. The answer closes the connection. The deadline for the request line and
  headers, which arrive before any ASGI code runs, is `evalsvc.api.connections`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evalsvc.api.responses import send_error
from evalsvc.errors import Overloaded, PayloadTooLarge, RequestTimeout

_FREE = 0  # tenant ids start at 1


class InFlightSlots:
    """Scoring requests being served now, by tenant, across every process forked after its creation.

    One shared array holds the tenant id of each taken slot (0 when free): `bound` slots in all,
    at most `per_tenant` of them held by one tenant. A scan of a few dozen integers under one lock
    is all an acquire costs.
    """

    def __init__(self, bound: int, per_tenant: int) -> None:
        self.bound = bound
        self.per_tenant = min(per_tenant, bound)
        self._holders = multiprocessing.get_context("spawn").Array("q", bound)

    @contextmanager
    def slot(self, tenant_id: int) -> Iterator[None]:
        """Hold a slot for `tenant_id` while the block runs; `Overloaded` (429) when none is free."""
        refused = self._acquire(tenant_id)
        if refused is not None:
            raise Overloaded(refused)
        try:
            yield
        finally:
            self._release(tenant_id)

    def _acquire(self, tenant_id: int) -> str | None:
        """None when a slot was taken, else why not."""
        with self._holders.get_lock():
            holders = self._holders.get_obj()
            if sum(holder == tenant_id for holder in holders) >= self.per_tenant:
                return (
                    f"this API key's tenant has {self.per_tenant} scoring requests in flight; retry shortly"
                )
            for index, holder in enumerate(holders):
                if holder == _FREE:
                    holders[index] = tenant_id
                    return None
        return f"more than {self.bound} scoring requests in flight; retry shortly"

    def _release(self, tenant_id: int) -> None:
        with self._holders.get_lock():
            holders = self._holders.get_obj()
            for index, holder in enumerate(holders):
                if holder == tenant_id:
                    holders[index] = _FREE
                    return

    @property
    def current(self) -> int:
        with self._holders.get_lock():
            return sum(holder != _FREE for holder in self._holders.get_obj())


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


class BodyDeadlineMiddleware:
    """408 for a body that arrives too slowly; see the module docstring for the rule.

    The deadline applies while the body is incomplete only: once it is read, `receive` waits for a
    disconnect (a streamed answer listens for one) and must not time out. Whatever the app answers
    after the deadline passed (an exception handler's 400, say) is replaced by the 408.
    """

    def __init__(self, app: ASGIApp, timeout_s: float, min_bytes_per_s: int) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.min_bytes_per_s = min_bytes_per_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        received = 0
        body_complete = timed_out = answered = False
        late = RequestTimeout(
            f"the request body was not received in time (at least {self.min_bytes_per_s} bytes per "
            f"second after the first {self.timeout_s:g} s); send it faster"
        )

        async def receive_in_time() -> Message:
            nonlocal received, body_complete, timed_out
            if body_complete:
                return await receive()
            deadline = started + self.timeout_s + received / self.min_bytes_per_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise late from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
            return message

        async def send_unless_late(message: Message) -> None:
            nonlocal answered
            if timed_out:
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_unless_late)
        except Exception:
            if not timed_out:
                raise
        if timed_out and not answered:
            await send_error(send, late)
