"""A circuit breaker: stop calling a service that keeps failing, try it again later.

    closed ──(failure_threshold failures in a row)──▶ open ──(reset_timeout_s)──▶ half_open
      ▲                                                 ▲                            │
      └──────────── the probe succeeded ────────────────┼────── the probe failed ────┘

The order service asks ``allow()`` before each call to the user service, then reports
the outcome with ``record_success()`` or ``record_failure()``. ``clock`` is injectable so
the state machine can be tested without waiting.
"""

import time


class CircuitBreaker:
    def __init__(self, failure_threshold: int = 5, reset_timeout_s: float = 2.0, clock=time.monotonic):
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.clock = clock
        self._state = "closed"
        self.failures = 0            # consecutive failures while closed
        self.opened_at = None        # clock() when the breaker last opened
        self.probe_in_flight = False  # half-open: one trial call at a time

    @property
    def state(self) -> str:
        """'closed', 'open' or 'half_open' (an open breaker turns half-open once its timeout passed)."""
        if self._state == "open" and self.clock() - self.opened_at >= self.reset_timeout_s:
            self._state = "half_open"
            self.probe_in_flight = False
        return self._state

    def allow(self) -> bool:
        """May the caller make the call now? Open: no (fail fast). Half-open: one probe only."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self.probe_in_flight:
            self.probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        """The call worked: close the breaker and forget past failures."""
        self._state = "closed"
        self.failures = 0
        self.probe_in_flight = False

    def record_failure(self) -> None:
        """The call failed: count it; open at the threshold, or at once when a probe failed."""
        self.failures += 1
        if self._state == "half_open" or self.failures >= self.failure_threshold:
            self._state = "open"
            self.opened_at = self.clock()
            self.probe_in_flight = False
