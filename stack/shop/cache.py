"""The user cache's plumbing: the Redis client, and the safety net around the cache exercise.

The cache-aside logic itself is the learner's (lab 03, exercise ``user_cache``:
``get_user`` and ``forget_user``, loaded through ``shop/exercises.py``). Around it,
this module guarantees what a cache must never break:

* no Redis in this stack, or the exercise not written yet: every read goes to the DB;
* Redis down or slow (refused, timed out, pool exhausted): the error is logged and
  the request takes the DB path. A cache is an optimisation, never a dependency:
  Redis down is slower, not a 500.

Every Redis command is bounded: a short connect/read timeout, a bounded connection
pool, and no retries (redis-py retries 10 times by default: seconds per request).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from shop.config import Settings
from shop.errors import DomainError, ExerciseNotDone
from shop.exercises import Exercises

log = logging.getLogger("uvicorn.error")

try:
    from redis.maint_notifications import MaintNotificationsConfig
    # Off, and not "auto": with it on, redis-py 8 skips its check that replaces a pooled
    # connection the server closed, so every replica's first command after a Redis restart
    # fails (the cache shrugs it off, but each is a needless database read).
    _NO_MAINT_NOTIFICATIONS = {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
except ImportError:  # redis-py < 7 has no maintenance notifications
    _NO_MAINT_NOTIFICATIONS = {}

# What a lost, slow or saturated Redis looks like from redis-py.
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def connect(settings: Settings) -> aioredis.Redis | None:
    """A Redis client for the app's lifespan, or None when no Redis is configured.

    Nothing connects here: the first command does. So the service starts (and is
    ready) even while Redis is down, and reconnects by itself when Redis is back.
    """
    if not settings.redis_url:
        return None
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,           # waiting for a free pooled connection
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
        **_NO_MAINT_NOTIFICATIONS,
        client_name=f"shop-users:{settings.instance}",
    )
    return aioredis.Redis(connection_pool=pool)


async def close(client: aioredis.Redis | None) -> None:
    if client is not None:
        await client.aclose(close_connection_pool=True)


def not_written(exercises: Exercises, name: str) -> str | None:
    """Why exercise ``name`` cannot run yet (its file is missing), or None.

    Checked at start-up so that /stats is right before the first request; a stub
    function is found on its first call. A file that does not import is left for the
    requests to report (500 exercise_error names the problem).
    """
    try:
        exercises.module(name)
    except ExerciseNotDone as exc:
        return str(exc.detail)
    except DomainError:
        return None
    return None


class Degraded:
    """Counts Redis failures and logs them at most once a second (not once per request)."""

    def __init__(self, what: str):
        self.what = what
        self.errors = 0
        self.last_error: str | None = None
        self._logged_at = 0.0
        self._unlogged = 0

    def failed(self, action: str, exc: BaseException) -> None:
        self.errors += 1
        self._unlogged += 1
        self.last_error = f"{action}: {type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._logged_at >= 1.0:
            log.warning("%s degraded (%d Redis errors in the last second, last %s)",
                        self.what, self._unlogged, self.last_error)
            self._logged_at, self._unlogged = now, 0


class UserCache:
    """Runs the learner's cache-aside functions; falls back to the DB on any Redis trouble."""

    EXERCISE = "user_cache"

    def __init__(self, client: aioredis.Redis | None, exercises: Exercises, ttl_s: int):
        self.redis = client
        self.exercises = exercises
        self.ttl_s = ttl_s
        self.degraded = Degraded("user cache")
        self.off_reason: str | None = None
        if client is None:
            self.off_reason = "no Redis in this stack"
        elif missing := not_written(exercises, self.EXERCISE):
            self._turn_off(missing)

    async def get(self, user_id: int, load: Callable[[int], Awaitable[dict | None]]) -> dict | None:
        """The user, from Redis when cached; ``load(user_id)`` reads the database."""
        if self.off_reason:
            return await load(user_id)
        try:
            return await self.exercises.call(self.EXERCISE, "get_user", self.redis, user_id, load, self.ttl_s,
                                             passthrough=REDIS_ERRORS)
        except ExerciseNotDone as exc:
            self._turn_off(str(exc.detail))
        except REDIS_ERRORS as exc:
            self.degraded.failed("get_user", exc)
        return await load(user_id)

    async def forget(self, user_id: int) -> None:
        """After a write: drop the cached copy so the next read sees the new row."""
        if self.off_reason:
            return
        try:
            await self.exercises.call(self.EXERCISE, "forget_user", self.redis, user_id, passthrough=REDIS_ERRORS)
        except ExerciseNotDone as exc:
            self._turn_off(str(exc.detail))
        except REDIS_ERRORS as exc:
            # The write itself succeeded; the stale copy lives at most cache_ttl_s more.
            self.degraded.failed("forget_user", exc)

    def _turn_off(self, why: str) -> None:
        self.off_reason = f"cache exercise not done ({why}): reading from the database"
        log.info("user cache off: %s", self.off_reason)

    def stats(self) -> dict:
        return {
            "enabled": self.off_reason is None,
            "off_reason": self.off_reason,
            "source": self.exercises.source(self.EXERCISE),
            "ttl_s": self.ttl_s,
            "redis_errors": self.degraded.errors,
            "last_error": self.degraded.last_error,
        }
