"""uvicorn's httptools protocol with bounds on the request head: size, header count and time.

httptools itself takes headers of any size and waits for them forever; uvicorn's h11 protocol
bounds the size (`h11_max_incomplete_event_size`) but is slower. This subclass counts the
request line and headers as they are parsed and answers 431 past `max_header_bytes` or
`max_headers`, and closes a connection whose request head has not arrived `header_timeout_s`
after the connection opened or the previous response finished (408 if part of it came). The
body has its own limit and timeout in the app.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _HeadTooLarge(Exception):
    pass


class LimitedHttpTools(HttpToolsProtocol):
    max_header_bytes = 32 << 10
    max_headers = 100
    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_count = 0
        self._too_large = ""
        self._in_head = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._head_count = 0
        self._in_head = True
        if self._head_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's head, if any, has the same time to arrive

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._send_error(431, "Request Header Fields Too Large", self._too_large)
        else:
            super().send_400_response(msg)

    def _count(self, n: int, headers: int) -> None:
        self._head_bytes += n
        self._head_count += headers
        if self._head_bytes > self.max_header_bytes:
            self._too_large = (f"request line and headers exceed {self.max_header_bytes} B")
        elif self._head_count > self.max_headers:
            self._too_large = f"more than {self.max_headers} headers"
        if self._too_large:
            raise _HeadTooLarge(self._too_large)  # httptools stops; uvicorn answers (above)

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete and not self._in_head:
            return  # a request is being served: its body and answer have their own bounds
        if self._in_head:
            self._send_error(408, "Request Timeout",
                             f"request head not received within {self.header_timeout_s:g} s")
        else:
            self.transport.close()

    def _send_error(self, status: int, reason: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
        self.transport.write(head + body)
        self.transport.close()


def limited_protocol(max_header_bytes: int, max_headers: int,
                     header_timeout_s: float) -> type[LimitedHttpTools]:
    """A `LimitedHttpTools` class with these bounds, for `uvicorn.Config(http=...)`."""
    return type("LimitedHttpTools", (LimitedHttpTools,), {
        "max_header_bytes": max_header_bytes, "max_headers": max_headers,
        "header_timeout_s": header_timeout_s})
