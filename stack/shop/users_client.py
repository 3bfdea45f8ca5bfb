"""The order service's client of the user service (lab 07): is this buyer a user?

    POST /orders ──▶ bulkhead ──▶ circuit breaker ──▶ GET {users_url}/users/{id}  (timeout, retries)

In that order:

1. the **bulkhead** (``resilience.Bulkhead``): at most ``users_bulkhead`` calls in flight;
   one more answers 503 ``bulkhead_full`` at once (the httpx pool has the same bound);
2. the **circuit breaker**, the learner's ``circuit_breaker.CircuitBreaker`` (an exercise,
   loaded from the workspace like the others): when it does not ``allow()`` the call, 503
   ``circuit_open`` at once, with ``Retry-After``. Until the exercise is written there is
   no breaker: every order pays the full timeouts and retries;
3. the call itself: ``users_timeout_s`` per attempt, up to ``users_attempts`` attempts with
   full-jitter backoff, only on no answer or a 5xx (``resilience.retrying``).

The outcome feeds the breaker: an answer (200, or 404: the service works, the user does
not exist) is a success; no answer or a 5xx after the retries is a failure (503
``users_unavailable``).
"""

import math
import time

import httpx

from shop.config import Settings
from shop.errors import DomainError, ExerciseNotDone
from shop.exercises import ExerciseError, Exercises
from shop.resilience import Bulkhead, retrying

EXERCISE = "circuit_breaker"


class UsersUnavailable(DomainError):
    status_code = 503
    code = "users_unavailable"


class CircuitOpen(DomainError):
    status_code = 503
    code = "circuit_open"


class UsersClient:
    def __init__(self, settings: Settings, exercises: Exercises):
        self.settings = settings
        limit = settings.users_bulkhead
        assert settings.users_url is not None   # orders_app makes a client only when it is set
        self.http = httpx.AsyncClient(base_url=settings.users_url, timeout=settings.users_timeout_s,
                                      limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit))
        self.bulkhead = Bulkhead(limit, "users")
        self.exercises = exercises
        self.breaker, self.breaker_source = self._make_breaker()
        self.counts = {"calls": 0, "attempts": 0, "ok": 0, "not_found": 0, "failed": 0, "short_circuited": 0}

    def _make_breaker(self):
        try:
            cls = getattr(self.exercises.module(EXERCISE), "CircuitBreaker", None)
        except ExerciseNotDone as exc:
            return None, f"none: {exc.detail}"
        except ExerciseError as exc:
            return None, f"none: {exc.detail}"
        if cls is None:
            return None, f"none: {EXERCISE}.py defines no class CircuitBreaker"
        try:
            breaker = cls(failure_threshold=self.settings.breaker_failures,
                          reset_timeout_s=self.settings.breaker_reset_s)
            _ = breaker.state   # a stub raises NotImplementedError here
        except NotImplementedError:
            return None, f"none: {EXERCISE}.py is still the stub"
        except Exception as exc:  # learner code: say what broke, serve without a breaker
            return None, f"none: CircuitBreaker() raised {type(exc).__name__}: {exc}"
        return breaker, f"{self.exercises.source(EXERCISE)}: {EXERCISE}.CircuitBreaker"

    def _breaker(self, method: str):
        """Call the learner's method; a crash is the learner's to fix (500 exercise_error)."""
        try:
            return getattr(self.breaker, method)()
        except NotImplementedError as exc:
            raise ExerciseNotDone(f"CircuitBreaker.{method}() is still the stub") from exc
        except Exception as exc:
            raise ExerciseError(f"CircuitBreaker.{method}() raised {type(exc).__name__}: {exc}") from exc

    def breaker_state(self) -> str | None:
        if self.breaker is None:
            return None
        try:
            return str(self.breaker.state)
        except Exception as exc:  # learner code: report, do not break /stats
            return f"error: {type(exc).__name__}"

    async def user_exists(self, user_id: int) -> bool:
        """True if the user service knows ``user_id``, False on its 404; else 503 (an error)."""
        self.counts["calls"] += 1
        async with self.bulkhead:
            if self.breaker is not None and not self._breaker("allow"):
                self.counts["short_circuited"] += 1
                error = CircuitOpen("the user service failed repeatedly: the circuit breaker is open, "
                                    "orders fail fast until a probe succeeds")
                error.headers = {"Retry-After": str(self.retry_after_s())}
                raise error
            s = self.settings

            def count(_attempt: int) -> None:
                self.counts["attempts"] += 1

            try:
                response = await retrying(lambda: self.http.get(f"/users/{user_id}"), method="GET",
                                          attempts=s.users_attempts, base_s=s.users_backoff_base_s,
                                          cap_s=s.users_backoff_cap_s, on_attempt=count)
            except httpx.TransportError as exc:
                self._failed()
                raise UsersUnavailable(f"the user service did not answer ({type(exc).__name__}) after "
                                       f"{s.users_attempts} attempt(s)") from None
            if response.status_code >= 500:
                self._failed()
                raise UsersUnavailable(f"the user service answered {response.status_code} after "
                                       f"{s.users_attempts} attempt(s)")
            if self.breaker is not None:
                self._breaker("record_success")
            if response.status_code == 404:
                self.counts["not_found"] += 1
                return False
            if response.status_code != 200:
                raise UsersUnavailable(f"the user service answered {response.status_code} to GET /users/{user_id}")
            self.counts["ok"] += 1
            return True

    def _failed(self) -> None:
        self.counts["failed"] += 1
        if self.breaker is not None:
            self._breaker("record_failure")

    def stats(self) -> dict:
        return {"url": self.settings.users_url, "timeout_s": self.settings.users_timeout_s,
                "attempts_max": self.settings.users_attempts, "bulkhead": self.bulkhead.stats(),
                "breaker": {"state": self.breaker_state(), "source": self.breaker_source,
                            "failure_threshold": self.settings.breaker_failures,
                            "reset_timeout_s": self.settings.breaker_reset_s},
                **self.counts, "at": time.time()}

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.settings.breaker_reset_s))

    async def aclose(self) -> None:
        await self.http.aclose()
