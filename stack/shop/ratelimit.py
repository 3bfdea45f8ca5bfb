"""Per-client rate limiting, shared by every replica: the counters live in Redis.

The counting itself is the learner's (lab 03, exercise ``rate_limit``: ``allow(redis,
client, limit, window_s) -> (allowed, retry_after_s)``, atomic in Redis). Around it,
this module decides *who* the client is, answers ``429`` with ``Retry-After`` and a
JSON body, and fails open: Redis down, or the exercise not written yet, lets requests
through (a limiter must not become the outage it protects against).

Who is a client:
* ``X-Client-Id: <key>`` — an API key (here: any 1–64 of ``A-Z a-z 0-9 . _ -``);
* without one, and only with ``SHOP_RATE_LIMIT_BY_IP``: the client IP that nginx puts
  in ``X-Real-IP`` (the peer address when there is no proxy). Trust that header only
  when the service is reachable through the proxy alone, as here (127.0.0.1).
* otherwise the request is not metered.

Off unless the settings ask for it (``SHOP_RATE_LIMIT`` > 0 and a Redis URL).
"""

import re

import redis.asyncio as aioredis

from shop.cache import REDIS_ERRORS, Degraded, not_written
from shop.config import Settings
from shop.errors import DomainError, ExerciseNotDone, send_error
from shop.exercises import Exercises

EXEMPT_PATHS = ("/health", "/ready", "/stats")   # probes and the lab's read-only numbers
CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RateLimiter:
    EXERCISE = "rate_limit"

    def __init__(self, client: aioredis.Redis | None, exercises: Exercises, settings: Settings):
        self.redis = client
        self.exercises = exercises
        self.limit = settings.rate_limit
        self.window_s = settings.rate_limit_window_s
        self.by_ip = settings.rate_limit_by_ip
        self.degraded = Degraded("rate limiter")
        self.off_reason: str | None = (None if client is not None and self.limit > 0
                                       else "not configured (SHOP_RATE_LIMIT=0 or no Redis)")
        if self.off_reason is None and (missing := not_written(exercises, self.EXERCISE)):
            self.off_reason = f"rate limit exercise not done ({missing}): not limiting"

    async def allow(self, client: str) -> tuple[bool, int]:
        """(allowed, retry_after_s) for one more request of ``client``."""
        if self.off_reason:
            return True, 0
        try:
            allowed, retry_after = await self.exercises.call(
                self.EXERCISE, "allow", self.redis, client, self.limit, self.window_s, passthrough=REDIS_ERRORS)
        except ExerciseNotDone as exc:
            self.off_reason = f"rate limit exercise not done ({exc.detail}): not limiting"
            return True, 0
        except REDIS_ERRORS as exc:
            self.degraded.failed("allow", exc)   # fail open
            return True, 0
        return bool(allowed), max(1, int(retry_after))

    def stats(self) -> dict:
        return {
            "enabled": self.off_reason is None,
            "off_reason": self.off_reason,
            "source": self.exercises.source(self.EXERCISE),
            "limit": self.limit,
            "window_s": self.window_s,
            "by_ip": self.by_ip,
            "redis_errors": self.degraded.errors,
            "last_error": self.degraded.last_error,
        }


def client_identity(scope, by_ip: bool) -> str | None:
    """``key:<id>`` from X-Client-Id, ``ip:<addr>`` when metering by IP, else None.

    Raises ValueError for an X-Client-Id that is not a plausible key.
    """
    headers = dict(scope["headers"])
    if (key := headers.get(b"x-client-id")) is not None:
        key = key.decode("latin-1")
        if not CLIENT_ID.match(key):
            raise ValueError("X-Client-Id must be 1-64 characters of A-Z a-z 0-9 . _ -")
        return f"key:{key}"
    if by_ip:
        forwarded = headers.get(b"x-real-ip", b"").decode("latin-1").strip()
        return f"ip:{forwarded or (scope.get('client') or ('unknown',))[0]}"
    return None


class RateLimit:
    """Pure ASGI middleware: asks the app's ``RateLimiter`` before every metered request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            return await self.app(scope, receive, send)
        limiter: RateLimiter = scope["app"].state.rate_limiter
        try:
            client = client_identity(scope, limiter.by_ip)
        except ValueError as exc:
            return await send_error(send, 400, "bad_request", str(exc))
        if client is None:
            return await self.app(scope, receive, send)
        try:
            allowed, retry_after = await limiter.allow(client)
        except DomainError as exc:   # the learner's allow() crashed: say so, as JSON
            return await send_error(send, exc.status_code, exc.code, exc.detail)
        if allowed:
            return await self.app(scope, receive, send)
        detail = f"more than {limiter.limit} requests in {limiter.window_s} s: retry after {retry_after} s"
        return await send_error(send, 429, "rate_limited", detail, [(b"retry-after", str(retry_after).encode())])
