"""Resilience helpers (lab 07): retries with full-jitter backoff, a bulkhead, an outbox sweep.

* :func:`retrying` makes one call up to ``attempts`` times — only for an idempotent
  method, and only when the failure is worth another try (no answer in time, no
  connection, a 5xx). A 4xx is the caller's mistake: repeating it cannot help.
* :func:`full_jitter` is the wait before the next try: a random time in
  ``[0, min(cap, base·2^n)]``, so clients that failed together do not retry together.
* :class:`Bulkhead` bounds the calls in flight to one dependency; one over the bound
  fails at once (503 ``bulkhead_full``) instead of queueing behind a slow service.
* :class:`OutboxSweep`: the orders table is the outbox. An unfinished order that nobody
  touched for ``stale_s`` seconds (its message lost with a restarted broker, or never
  published while the broker was down) is published again; the worker's claim and the
  payment's idempotency key make a duplicate delivery harmless.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import httpx

from shop.broker import PUBLISH_ERRORS
from shop.db import DB_UNAVAILABLE
from shop.errors import DomainError

log = logging.getLogger("uvicorn.error")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class BulkheadFull(DomainError):
    status_code = 503
    code = "bulkhead_full"


def full_jitter(retry: int, base_s: float, cap_s: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retry + 1``: uniform in [0, min(cap, base·2^retry)]."""
    return rng() * min(cap_s, base_s * 2 ** retry)


def worth_retrying(method: str, response: httpx.Response | None = None, error: Exception | None = None) -> bool:
    """Only idempotent calls, and only on no answer (timeout, no connection) or a 5xx."""
    if method.upper() not in IDEMPOTENT:
        return False
    if error is not None:
        return isinstance(error, httpx.TransportError)
    return response is not None and response.status_code in RETRY_STATUSES


async def retrying(call: Callable[[], Awaitable[httpx.Response]], *, method: str, attempts: int,
                   base_s: float, cap_s: float, sleep=asyncio.sleep,
                   on_attempt: Callable[[int], None] | None = None) -> httpx.Response:
    """``await call()`` up to ``attempts`` times; the last answer (or error) is the caller's."""
    for attempt in range(attempts):
        if on_attempt:
            on_attempt(attempt)
        try:
            response = await call()
        except httpx.TransportError as exc:
            if attempt + 1 >= attempts or not worth_retrying(method, error=exc):
                raise
        else:
            if attempt + 1 >= attempts or not worth_retrying(method, response=response):
                return response
        await sleep(full_jitter(attempt, base_s, cap_s))
    raise AssertionError("unreachable: the last attempt returns or raises")


class Bulkhead:
    """At most ``limit`` calls in flight; one more fails fast. One event loop: no lock needed
    (nothing awaits between the test and the increment)."""

    def __init__(self, limit: int, name: str = "users"):
        self.limit, self.name = limit, name
        self.in_flight = 0
        self.max_in_flight = 0
        self.rejected = 0

    async def __aenter__(self) -> "Bulkhead":
        if self.in_flight >= self.limit:
            self.rejected += 1
            raise BulkheadFull(f"{self.in_flight} calls to the {self.name} service are in flight already "
                               f"(the bulkhead's limit is {self.limit}): try again later")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self

    async def __aexit__(self, *exc) -> None:
        self.in_flight -= 1

    def stats(self) -> dict:
        return {"limit": self.limit, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "rejected": self.rejected}


class OutboxSweep:
    """Every ``every_s`` seconds, publish again the unfinished orders untouched for ``stale_s``."""

    SQL = ("SELECT id FROM orders WHERE status IN ('pending', 'processing', 'retrying')"
           " AND updated_at < clock_timestamp() - make_interval(secs => $1)"
           " AND coalesce(requeued_at, updated_at) < clock_timestamp() - make_interval(secs => $1)"
           " ORDER BY id LIMIT $2")

    def __init__(self, pool, publish: Callable[[int], None], every_s: float, stale_s: float, batch: int = 200):
        self.pool, self.publish = pool, publish
        self.every_s, self.stale_s, self.batch = every_s, stale_s, batch
        self.sweeps = 0
        self.requeued = 0
        self.last_error: str | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.sweep_once()
            except (*DB_UNAVAILABLE, *PUBLISH_ERRORS) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    async def sweep_once(self) -> int:
        """One pass: how many orders were published again."""
        self.sweeps += 1
        async with self.pool.acquire(timeout=2) as conn:
            ids = [row["id"] for row in await conn.fetch(self.SQL, self.stale_s, self.batch)]
            done = 0
            for order_id in ids:
                await asyncio.to_thread(self.publish, order_id)   # raises while the broker is down
                await conn.execute("UPDATE orders SET requeued = requeued + 1, requeued_at = clock_timestamp()"
                                   " WHERE id = $1", order_id)
                done += 1
        if done:
            self.requeued += done
            self.last_error = None
            log.info("outbox sweep: published %d stale unfinished order(s) again", done)
        return done

    def stats(self) -> dict:
        return {"every_s": self.every_s, "stale_s": self.stale_s, "sweeps": self.sweeps,
                "requeued": self.requeued, "last_error": self.last_error, "at": time.time()}
