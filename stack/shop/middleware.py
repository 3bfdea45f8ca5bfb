"""Small pure-ASGI middlewares (no per-request overhead of BaseHTTPMiddleware)."""

import asyncio
import logging

from shop.errors import send_error

log = logging.getLogger("uvicorn.error")

CLOSE = [(b"connection", b"close")]   # the rest of an unread body must not be taken for a next request
# A body over the limit but no larger than what nginx in front admits (client_max_body_size 1m)
# is read to its end and dropped before the 413: closing a connection with unread bytes resets
# it, and nginx takes a reset while it still sends for a failed replica (a 502, not the 413).
DRAIN_MAX_BYTES = 1024 * 1024


class InstanceHeader:
    """Add ``X-Instance: <name>`` to every response: which replica answered."""

    def __init__(self, app, instance: str):
        self.app = app
        self.header = (b"x-instance", instance.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_instance(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_instance)


def is_json(content_type: bytes | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters (charset) aside."""
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class RequestBody:
    """Admit a request body before the app parses it, or answer why not (all JSON errors):

    * more than ``max_bytes`` (declared or sent) → 413 ``payload_too_large``, once the body is
      read to its end (up to ``DRAIN_MAX_BYTES``; a larger one is answered at once);
    * not all there within ``timeout_s`` of the headers (a slow or stalled client) → 408
      ``request_timeout``: a slow sender holds a connection for that long, never forever;
    * a body that is not JSON (``Content-Type`` other than ``application/json``) → 415
      ``unsupported_media_type``: every route of the shop takes JSON.
    """

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > DRAIN_MAX_BYTES):
            return await self._too_large(send)   # not worth reading: answered at once
        chunks, size, more = [], 0, True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except TimeoutError:
                return await send_error(send, 408, "request_timeout",
                                        f"the request body did not arrive within {self.timeout_s:g} s", CLOSE)
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > DRAIN_MAX_BYTES:
                return await self._too_large(send)
            if size <= self.max_bytes:   # past the limit the rest is only read, not kept
                chunks.append(chunk)
            more = message.get("more_body", False)
        if size > self.max_bytes:
            return await self._too_large(send)
        body = b"".join(chunks)
        if body and not is_json(headers.get(b"content-type")):
            sent = (headers.get(b"content-type") or b"no Content-Type").decode("latin-1")[:100]
            return await send_error(send, 415, "unsupported_media_type",
                                    f"the body must be JSON (Content-Type: application/json), not {sent}")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send):
        await send_error(send, 413, "payload_too_large", f"request body over {self.max_bytes} bytes", CLOSE)


class InternalErrors:
    """The last net: an exception that no handler answered becomes a JSON 500 ``internal_error``
    (its traceback goes to the log, never to the client), not a plain-text page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:   # half an answer is out: nothing to do but drop the connection
                raise
            await send_error(send, 500, "internal_error",
                             f"the service failed on this request ({type(exc).__name__}): its log has the details")
