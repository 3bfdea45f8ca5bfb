"""Lab 07, part 2 — resilience: timeouts, retries, a circuit breaker, a bulkhead (and scalelab.chaos).

The order service checks each buyer with the user service (``GET /users/{id}`` through
nginx) before it stores an order: ``shop/users_client.py`` (timeout per attempt, retries
with full-jitter backoff, a bulkhead) around the learner's ``CircuitBreaker``
(``circuit_breaker.py`` in the workspace). ``GET /stats`` on the order service shows the
breaker's state and the client's counters; the helpers below read it.
"""

import asyncio
import time
from contextlib import contextmanager

import httpx
import pandas as pd

from scalelab import aio
from scalelab.exercise import CheckFailed, Exercise, NotAttempted, is_stub
from scalelab.labs.lab05 import ITEMS, new_user

__all__ = ["circuit_breaker", "orders_stats", "breaker_state", "users_down", "users_paused", "without_breaker",
           "place_orders", "burst", "read_latencies", "summary", "wait_breaker", "until_ordering", "new_user",
           "FakeClock"]

ORDERS = "orders-1"


# -- helpers the check and the notebook share --------------------------------------------
def orders_stats(stack) -> dict:
    """The order service's /stats: its user-service client (bulkhead, breaker) and the outbox sweep."""
    return httpx.get(f"{stack.member_url(ORDERS)}/stats", timeout=5).json()


def breaker_state(stack) -> str | None:
    client = orders_stats(stack)["users_client"]
    if client is None:
        raise CheckFailed("the order service has no user-service client: SHOP_USERS_URL is not set "
                          "(the lab 07 stack sets it when nginx runs: stack.status())")
    return client["breaker"]["state"]


@contextmanager
def users_down(stack, signal: str = "KILL"):
    """Every user-service member killed (``KILL``) or frozen (``STOP``) inside the block; back after it."""
    members = stack.members("users")
    for member in members:
        stack.kill(member, signal)
    try:
        yield members
    finally:
        for member in members:
            if signal == "STOP":
                stack.kill(member, "CONT")
            else:
                stack.start(member)


def users_paused(stack):
    """The user service hangs: its processes are paused (SIGSTOP): connections open, no answer."""
    return users_down(stack, "STOP")


def without_breaker(stack) -> str:
    """Restart the order service with no circuit breaker: the workspace file is moved aside."""
    path = stack.workspace / "circuit_breaker.py"
    if path.exists():
        path.replace(path.with_suffix(".py.off"))
    stack.restart(ORDERS)
    return orders_stats(stack)["users_client"]["breaker"]["source"]


async def _place(api: httpx.AsyncClient, user_id: int, t0: float) -> dict:
    started = time.perf_counter()
    try:
        r = await api.post("/orders", json={"user_id": user_id, "items": ITEMS})
        status, body = r.status_code, r.json()
    except httpx.HTTPError as exc:
        status, body = 0, {"error": type(exc).__name__}
    done = time.perf_counter()
    return {"t_s": started - t0, "status": status, "error": body.get("error"), "order_id": body.get("id"),
            "ms": (done - started) * 1000}


def place_orders(stack, user_id: int, n: int, concurrency: int = 1, timeout: float = 15) -> pd.DataFrame:
    """POST ``n`` orders, ``concurrency`` at a time: one row per request (t_s, status, error, ms)."""

    async def go():
        limits = httpx.Limits(max_connections=max(concurrency, 1) * 2)
        async with httpx.AsyncClient(base_url=stack.url("orders"), timeout=timeout, limits=limits) as api:
            t0 = time.perf_counter()
            gate = asyncio.Semaphore(concurrency)

            async def one():
                async with gate:
                    return await _place(api, user_id, t0)

            return await asyncio.gather(*(one() for _ in range(n)))

    return pd.DataFrame(aio.run(go()))


def burst(stack, user_id: int, n: int, read_order_id: int, reads: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``n`` orders at the same moment and, meanwhile, ``reads`` GET /orders/{id} one after another.
    The connections are opened first (``n`` concurrent GET /health), so what is timed is the
    service's answer, not ``n`` TCP handshakes at once (through a NodePort on a busy machine,
    hundreds of ms)."""

    async def go():
        async with httpx.AsyncClient(base_url=stack.url("orders"), timeout=15,
                                     limits=httpx.Limits(max_connections=n + 4)) as api:
            await asyncio.gather(*(api.get("/health") for _ in range(n + 1)))   # n + 1 connections kept alive
            t0 = time.perf_counter()

            async def read_loop():
                await asyncio.sleep(0.1)   # the burst's calls are in flight by now
                rows = []
                for _ in range(reads):
                    started = time.perf_counter()
                    r = await api.get(f"/orders/{read_order_id}")
                    rows.append({"t_s": started - t0, "status": r.status_code,
                                 "ms": (time.perf_counter() - started) * 1000})
                    await asyncio.sleep(0.02)
                return rows

            results = await asyncio.gather(read_loop(), *(_place(api, user_id, t0) for _ in range(n)))
            return pd.DataFrame(results[1:]), pd.DataFrame(results[0])

    return aio.run(go())


def read_latencies(frame: pd.DataFrame) -> float:
    return float(frame.ms.median())


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per outcome: how many, p50 and max latency (ms)."""
    outcome = frame.error.fillna(frame.status.astype(str))
    return (frame.assign(outcome=outcome).groupby("outcome").ms
            .agg(requests="count", p50_ms="median", max_ms="max").round(1).reset_index())


def wait_breaker(stack, state: str, timeout: float) -> float:
    """Poll /stats until the breaker shows ``state``; seconds waited."""
    started = time.monotonic()
    while (now := breaker_state(stack)) != state:
        if time.monotonic() - started > timeout:
            raise CheckFailed(f"the breaker stayed {now!r} for {timeout:.0f} s, expected {state!r}")
        time.sleep(0.05)
    return time.monotonic() - started


def until_ordering(stack, user_id: int, timeout: float) -> float:
    """Place an order every 0.1 s until one is accepted (202); seconds it took (a half-open
    breaker closes only when a probe succeeds: an order is that probe)."""
    started = time.monotonic()
    while True:
        result = place_orders(stack, user_id, 1).iloc[0]
        if result.status == 202:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise CheckFailed(f"orders still answer {result.status} {result.error} after {timeout:.0f} s: "
                              "a successful probe (half-open) must close the breaker")
        time.sleep(0.1)


class FakeClock:
    """A clock the check moves by hand: ``clock()`` reads it, ``clock.advance(s)`` moves it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the exercise: the circuit breaker's state machine -------------------------------------------
def _state_machine(cls) -> str:
    """The learner's class with a fake clock: every transition, no waiting."""
    clock = FakeClock()
    b = cls(failure_threshold=3, reset_timeout_s=2.0, clock=clock)
    if b.state != "closed":
        raise CheckFailed(f"a new breaker is {b.state!r}: it starts 'closed'")
    for i in range(2):
        if not b.allow():
            raise CheckFailed(f"a closed breaker refused call {i + 1}: closed lets every call through")
        b.record_failure()
    if b.state != "closed":
        raise CheckFailed(f"after 2 failures (threshold 3) the breaker is {b.state!r}: it opens at the threshold")
    b.record_success()
    for _ in range(2):
        b.allow()
        b.record_failure()
    if b.state != "closed":
        raise CheckFailed("2 failures, a success, 2 failures opened the breaker: a success resets the count "
                          "(the threshold counts failures in a row)")
    b.allow()
    b.record_failure()
    if b.state != "open":
        raise CheckFailed(f"after 3 failures in a row (threshold 3) the breaker is {b.state!r}, expected 'open'")
    if b.allow():
        raise CheckFailed("an open breaker allowed a call: open means fail fast, no call")
    clock.advance(1.9)
    if b.allow() or b.state != "open":
        raise CheckFailed("1.9 s after opening (reset timeout 2 s) the breaker let a call through: "
                          "stay open until the timeout has passed")
    clock.advance(0.2)
    if not b.allow():
        raise CheckFailed("2.1 s after opening (reset timeout 2 s) allow() said no: after the timeout the "
                          "breaker is half-open and lets one probe through")
    if b.state != "half_open":
        raise CheckFailed(f"after the reset timeout the breaker is {b.state!r}, expected 'half_open'")
    if b.allow():
        raise CheckFailed("half-open, a second call was allowed while the probe is still out: one probe at a time "
                          "(a recovering service is not flooded)")
    b.record_failure()
    if b.state != "open" or b.allow():
        raise CheckFailed(f"the probe failed and the breaker is {b.state!r}: a failed probe opens it again at once")
    clock.advance(2.1)
    if not b.allow():
        raise CheckFailed("after a failed probe and another reset timeout, no new probe was allowed")
    b.record_success()
    if b.state != "closed" or not b.allow() or not b.allow():
        raise CheckFailed(f"the probe succeeded and the breaker is {b.state!r}: a successful probe closes it")
    return "closed →(3 failures) open →(2 s) half_open (1 probe) →(fail) open →(2 s, success) closed"


def _check_circuit_breaker(stack, exercise) -> str:
    module = exercise.load(stack)
    cls = getattr(module, "CircuitBreaker", None)
    if cls is None:
        raise CheckFailed("circuit_breaker.py must define class CircuitBreaker")
    methods = [getattr(cls, name) for name in ("allow", "record_success", "record_failure")]
    state = cls.__dict__.get("state")
    methods += [state.fget] if isinstance(state, property) else []
    if all(is_stub(m) for m in methods):
        raise NotAttempted("CircuitBreaker's methods still raise NotImplementedError: write the state machine")
    try:
        proved = [_state_machine(cls)]
    except NotImplementedError:
        raise NotAttempted("a CircuitBreaker method still raises NotImplementedError") from None
    except CheckFailed:
        raise
    except Exception as exc:
        raise CheckFailed(f"CircuitBreaker raised {type(exc).__name__}: {exc}") from None

    # Live: the order service loads circuit_breaker.py when it starts.
    stack.restart(ORDERS)
    stats = orders_stats(stack)["users_client"]
    if stats is None or not stats["breaker"]["source"].startswith("workspace"):
        raise CheckFailed(f"the order service runs without your breaker: {stats and stats['breaker']['source']}")
    threshold, reset_s = stats["breaker"]["failure_threshold"], stats["breaker"]["reset_timeout_s"]
    attempts = stats["attempts_max"]
    user = new_user(stack, "Breaker Check")
    ok = place_orders(stack, user, 2)
    if not (ok.status == 202).all():
        raise CheckFailed(f"with the user service up, orders answered {ok.status.tolist()} "
                          f"({ok.error.tolist()}; 0: no answer): expected 202")
    with users_down(stack, "KILL"):
        before = orders_stats(stack)["users_client"]
        failing = place_orders(stack, user, threshold + 10)
        after = orders_stats(stack)["users_client"]
        errors = failing.error.tolist()
        if errors[:threshold] != ["users_unavailable"] * threshold:
            raise CheckFailed(f"users killed: the first {threshold} orders answered {errors[:threshold]}, expected "
                              "users_unavailable (the breaker opens only after the threshold)")
        if errors[threshold:] != ["circuit_open"] * 10:
            raise CheckFailed(f"users killed: after {threshold} failures the next orders answered "
                              f"{sorted(set(errors[threshold:]))}, expected circuit_open: record_failure() must "
                              f"open the breaker at failure_threshold={threshold}")
        calls_made = after["attempts"] - before["attempts"]
        if calls_made != threshold * attempts:
            raise CheckFailed(f"{calls_made} calls reached the user service for {threshold + 10} orders, expected "
                              f"{threshold}×{attempts}: an open breaker must not let calls through")
        slow = failing.ms[:threshold].median()
        fast = failing.ms[threshold:].median()
        if not fast < 20:
            raise CheckFailed(f"with the breaker open, orders failed in {fast:.0f} ms (p50), not < 20 ms")
        # Half-open with the service still down: one probe, it fails, open again.
        time.sleep(reset_s + 0.1)
        probe = place_orders(stack, user, 3)
        if probe.error.tolist() != ["users_unavailable", "circuit_open", "circuit_open"]:
            raise CheckFailed(f"half-open, users still down: 3 orders answered {probe.error.tolist()}, expected one "
                              "probe (users_unavailable) then circuit_open (the failed probe reopens the breaker)")
    # users are back (started and ready): after the reset timeout a probe succeeds and closes it.
    recovered_s = until_ordering(stack, user, reset_s + 5)
    if breaker_state(stack) != "closed":
        raise CheckFailed(f"an order went through, but the breaker is {breaker_state(stack)!r}, not 'closed'")
    proved.append(f"live, users killed: {threshold} orders failed in {slow:.0f} ms each (p50, {attempts} attempts) "
                  f"then circuit_open in {fast:.1f} ms (p50); half-open probe failed → open; users back → "
                  f"orders 202 again after {recovered_s:.1f} s, breaker closed")
    return "; ".join(proved)


circuit_breaker = Exercise(
    name="circuit_breaker",
    title="Exercise · the circuit breaker's state machine",
    checker=_check_circuit_breaker,
    hints=[
        "Keep three things: the state ('closed', 'open', 'half_open'), the count of failures in a row, and "
        "when the breaker opened (self.clock()). record_success() resets the count and closes.",
        "state: when it is 'open' and self.clock() - self.opened_at >= self.reset_timeout_s, it becomes "
        "'half_open' (compute it when read). allow(): closed → True; open → False; half_open → True once "
        "(set probe_in_flight), then False until the probe's outcome is recorded.",
        "record_failure(): count it; if the state was 'half_open' (the probe failed) or the count reached "
        "failure_threshold → state 'open', opened_at = self.clock(), probe_in_flight = False.",
    ],
    reference="shop.reference.circuit_breaker",
    handle="lab07.circuit_breaker",
)
