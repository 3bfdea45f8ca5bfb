"""uvicorn's HTTP protocol with two additions: a deadline for a request's headers, and JSON 400s.

uvicorn times out an idle connection only between two requests (``--timeout-keep-alive``):
a client that connects and never finishes its headers — or sends them one byte a minute,
the slowloris attack — holds the connection forever. Here a request must have all its
headers within ``SHOP_HEADERS_TIMEOUT_S`` (10 s) of its first byte (or of the connection);
past that the connection is closed, as nginx does with ``client_header_timeout``. The body
has its own deadline in the app (shop/middleware.py ``RequestBody``: 408).

And the one answer uvicorn writes itself, ``400 Invalid HTTP request``, is the service's
JSON error envelope instead of plain text.

uvicorn loads it by name: ``UVICORN_HTTP=shop.http_protocol:HttpProtocol`` in the
environment (the image and the local runtime set it), the same as ``--http``.
"""

import asyncio
import functools
import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from shop.config import Settings
from shop.errors import error_body


@functools.cache
def headers_timeout_s() -> float:
    return Settings().headers_timeout_s


class HttpProtocol(HttpToolsProtocol):
    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(error_body("bad_request", msg)).encode()
        self.transport.write(b"".join([STATUS_LINE[400], b"content-type: application/json\r\n",
                                       b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]))
        self.transport.close()

    def _start_deadline(self) -> None:
        self._cancel_deadline()
        self._headers_deadline = self.loop.call_later(headers_timeout_s(), self._headers_too_slow)

    def _cancel_deadline(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
