"""The deadline uvicorn lacks: a request's line and headers must arrive in time.

uvicorn closes a kept-alive connection that stays idle, but nothing bounds a new connection that
sends nothing, or a request whose headers arrive a byte at a time: such a connection (slowloris)
holds a socket and a protocol object for as long as the client likes, and no ASGI code ever sees it,
since an app is called only once the headers are complete. `HeaderDeadlineProtocol` is uvicorn's
httptools protocol (the one uvicorn picks itself when httptools is installed) with one timer: armed
when the connection opens and when a new request starts on a kept-alive one, cancelled when the
headers are complete. When it fires the client gets 408 `request_timeout` and the connection closes.
The body has its own deadline, in `limits.BodyDeadlineMiddleware`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from evalsvc.api.metrics import OTHER, SharedMetrics
from evalsvc.errors import RequestTimeout


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """Set `header_timeout_s` and `metrics` with `header_deadline_protocol`."""

    header_timeout_s: ClassVar[float]
    metrics: ClassVar[SharedMetrics | None]
    _header_timer: asyncio.TimerHandle | None = None
    _waiting_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a further request on a kept-alive connection: its deadline runs from its first byte

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._waiting_since = time.perf_counter()
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        error = RequestTimeout(
            f"the request line and headers did not arrive within {self.header_timeout_s:g} s; send them at once"
        )
        body = json.dumps({"error": error.to_dict()}).encode()
        head = (
            f"HTTP/1.1 {error.http_status} Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
        if self.metrics is not None:
            self.metrics.observe_request(OTHER, error.http_status, time.perf_counter() - self._waiting_since)


def header_deadline_protocol(timeout_s: float, metrics: SharedMetrics | None) -> type[HeaderDeadlineProtocol]:
    """The protocol class for uvicorn's `http` setting (uvicorn instantiates it per connection)."""
    return type(
        "HeaderDeadlineProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout_s": timeout_s, "metrics": metrics},
    )
