"""Lab 07, part 2: retries, the bulkhead, the circuit breaker, the outbox sweep, the chaos drill.

The unit tests need nothing running; the live ones run lab 07's stack (without Prometheus,
which part 2 does not use) and kill, pause and restart its real processes.
"""

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from scalelab import Stack
from scalelab.chaos import ChaosDrill, Fault, default_schedule
from scalelab.labs.lab07 import resilience as lab
from scalelab.plans import PLANS
from shop import resilience
from shop.reference import circuit_breaker as reference_module
from shop.reference.circuit_breaker import CircuitBreaker

from conftest import broker_kill_loses_no_accepted_order

REFERENCE = Path(reference_module.__file__)


# -- the breaker's state machine, with a fake clock --------------------------------------------
def test_reference_breaker_passes_the_checks_state_machine():
    assert lab._state_machine(CircuitBreaker).startswith("closed →")


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_the_timeout():
    clock = lab.FakeClock()
    b = CircuitBreaker(failure_threshold=2, reset_timeout_s=5, clock=clock)
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow()
    clock.advance(4.99)
    assert not b.allow()
    clock.advance(0.02)
    assert b.allow() and b.state == "half_open"
    assert not b.allow(), "one probe at a time"
    b.record_success()
    assert b.state == "closed" and b.failures == 0


def test_a_failed_probe_reopens_for_a_whole_new_timeout():
    clock = lab.FakeClock()
    b = CircuitBreaker(failure_threshold=1, reset_timeout_s=1, clock=clock)
    b.record_failure()
    clock.advance(1.5)
    assert b.allow()
    b.record_failure()
    assert b.state == "open"
    clock.advance(0.9)
    assert not b.allow()
    clock.advance(0.2)
    assert b.allow()


def test_the_generated_stub_reaches_not_implemented():
    class Stub:
        def __init__(self, **_):
            pass

        @property
        def state(self):
            raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        lab._state_machine(Stub)


# -- retries and backoff -----------------------------------------------------------------------------
def test_full_jitter_waits_at_most_the_capped_exponential():
    assert resilience.full_jitter(0, 0.1, 1.0, rng=lambda: 1.0) == pytest.approx(0.1)
    assert resilience.full_jitter(3, 0.1, 1.0, rng=lambda: 1.0) == pytest.approx(0.8)
    assert resilience.full_jitter(10, 0.1, 1.0, rng=lambda: 1.0) == pytest.approx(1.0)
    assert resilience.full_jitter(5, 0.1, 1.0, rng=lambda: 0.0) == 0.0
    waits = [resilience.full_jitter(2, 0.1, 1.0) for _ in range(200)]
    assert 0 <= min(waits) and max(waits) <= 0.4 and len(set(waits)) > 100, "random, within [0, 0.4]"


def _calls(method: str, answers: list, attempts: int = 3) -> tuple[int, object]:
    """Run ``retrying`` against a fake server answering ``answers`` in turn: (requests made, result)."""
    seen = []

    def handler(request):
        answer = answers[min(len(seen), len(answers) - 1)]
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://users") as client:
            async def no_sleep(_):
                return None
            try:
                return await resilience.retrying(lambda: client.request(method, "/users/1"), method=method,
                                                 attempts=attempts, base_s=0.01, cap_s=0.1, sleep=no_sleep)
            except httpx.TransportError as exc:
                return exc

    result = asyncio.run(go())
    return len(seen), result


def test_retries_an_idempotent_get_on_5xx_until_it_answers():
    n, response = _calls("GET", [503, 502, 200])
    assert n == 3 and response.status_code == 200


def test_never_retries_a_4xx():
    n, response = _calls("GET", [404, 200])
    assert n == 1 and response.status_code == 404


def test_never_retries_a_post():
    n, response = _calls("POST", [503, 200])
    assert n == 1 and response.status_code == 503


def test_retries_a_connection_error_a_bounded_number_of_times():
    n, result = _calls("GET", [httpx.ConnectError("refused")], attempts=4)
    assert n == 4 and isinstance(result, httpx.ConnectError)


def test_bulkhead_rejects_the_call_over_its_limit_at_once():
    async def go():
        bulkhead = resilience.Bulkhead(2)
        release = asyncio.Event()

        async def hold():
            async with bulkhead:
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(resilience.BulkheadFull):
            async with bulkhead:
                pass
        release.set()
        await asyncio.gather(*holders)
        async with bulkhead:
            pass
        return bulkhead.stats()

    stats = asyncio.run(go())
    assert stats == {"limit": 2, "in_flight": 0, "max_in_flight": 2, "rejected": 1}


# -- live ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab7(tmp_path_factory):
    """Lab 07's stack without Prometheus (part 2 does not read it), the reference breaker in place."""
    patch = pytest.MonkeyPatch()
    plan = PLANS[7]
    patch.setitem(PLANS, 7, replace(plan, replicas={k: v for k, v in plan.replicas.items() if k != "prometheus"}))
    stack = Stack(lab=7, state_dir=tmp_path_factory.mktemp("state-lab7r"))
    shutil.copy(REFERENCE, stack.workspace / "circuit_breaker.py")
    try:
        yield stack.up()
    finally:
        stack.down(purge=True)
        patch.undo()


@pytest.fixture(scope="module")
def buyer(lab7):
    return lab.new_user(lab7, "Resilience Test")


def test_unknown_buyer_is_a_404_after_one_call(lab7, buyer):
    before = lab.orders_stats(lab7)["users_client"]["attempts"]
    r = httpx.post(f"{lab7.url('orders')}/orders", json={"user_id": 2**62, "items": lab.ITEMS}, timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "unknown_user"
    assert lab.orders_stats(lab7)["users_client"]["attempts"] - before == 1, "a 404 is not retried"


def test_without_a_breaker_a_hung_user_service_costs_timeout_times_attempts(lab7, buyer):
    source = lab.without_breaker(lab7)
    try:
        assert source.startswith("none")
        stats = lab.orders_stats(lab7)["users_client"]
        floor_ms = stats["timeout_s"] * stats["attempts_max"] * 1000
        with lab.users_paused(lab7):
            frame = lab.place_orders(lab7, buyer, 6)
        assert (frame.error == "users_unavailable").all(), frame
        assert frame.ms.min() >= floor_ms, f"each order waited out every attempt: {frame.ms.tolist()}"
        assert frame.ms.max() < floor_ms + 1500, "bounded: timeouts plus at most the backoff cap"
    finally:
        (lab7.workspace / "circuit_breaker.py.off").replace(lab7.workspace / "circuit_breaker.py")
        lab7.restart("orders-1")


def test_breaker_check_passes_live_against_killed_users(lab7):
    lab.circuit_breaker.check(lab7)
    assert "circuit_open in" in lab.circuit_breaker.last_result


def test_with_the_breaker_open_a_hung_user_service_costs_milliseconds(lab7, buyer):
    lab7.restart("orders-1")
    threshold = lab.orders_stats(lab7)["users_client"]["breaker"]["failure_threshold"]
    with lab.users_paused(lab7):
        opening = lab.place_orders(lab7, buyer, threshold, concurrency=threshold)
        fast = lab.place_orders(lab7, buyer, 20)
    assert (opening.error == "users_unavailable").all() and opening.ms.min() > 1000
    assert (fast.error == "circuit_open").all()
    assert fast.ms.median() < 20, f"p50 {fast.ms.median():.1f} ms"
    lab.wait_breaker(lab7, "half_open", 10)
    assert lab.until_ordering(lab7, buyer, timeout=10) < 10, "users are back: a half-open probe succeeds"
    assert lab.breaker_state(lab7) == "closed"


def test_a_retried_order_is_replayed_even_with_the_breaker_open(lab7, buyer):
    lab7.restart("orders-1")
    threshold = lab.orders_stats(lab7)["users_client"]["breaker"]["failure_threshold"]
    body, key = {"user_id": buyer, "items": lab.ITEMS}, f"replay-{buyer}"
    with httpx.Client(base_url=lab7.url("orders"), timeout=10) as api:
        first = api.post("/orders", json=body, headers={"Idempotency-Key": key})
        with lab.users_down(lab7, "KILL"):
            lab.place_orders(lab7, buyer, threshold)
            assert lab.breaker_state(lab7) == "open"
            retry = api.post("/orders", json=body, headers={"Idempotency-Key": key})
            fresh = api.post("/orders", json=body, headers={"Idempotency-Key": key + "-new"})
    assert first.status_code == 202 and retry.status_code == 202 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == first.json()["id"]
    assert fresh.status_code == 503 and fresh.json()["error"] == "circuit_open"
    lab.until_ordering(lab7, buyer, timeout=10)


def test_bulkhead_bounds_calls_in_flight_and_reads_stay_fast(lab7, buyer):
    lab7.restart("orders-1")
    order_id = int(lab.place_orders(lab7, buyer, 1).order_id.iloc[0])
    limit = lab.orders_stats(lab7)["users_client"]["bulkhead"]["limit"]
    with lab.users_paused(lab7):
        burst, reads = lab.burst(lab7, buyer, 3 * limit, order_id)
    stats = lab.orders_stats(lab7)["users_client"]["bulkhead"]
    assert stats["max_in_flight"] == limit
    full = burst[burst.error == "bulkhead_full"]
    assert len(full) == 2 * limit and stats["rejected"] == 2 * limit
    assert full.ms.median() < 200 and burst[burst.error == "users_unavailable"].ms.min() > 1000
    assert (reads.status == 200).all() and reads.ms.median() < 50


def test_chaos_drill_loses_no_acknowledged_order(lab7, buyer):
    lab.until_ordering(lab7, buyer, 10)   # the last test left the breaker open: a probe closes it
    assert lab.breaker_state(lab7) == "closed"
    schedule = default_schedule(16)
    assert [f.member for f in schedule] == ["users-1", "redis-1", "standby-1", "worker-1", "rabbitmq-1"]
    drill = ChaosDrill(lab7, buyer, rate_per_s=3, duration_s=16, schedule=schedule)
    requests = drill.run()
    assert len(requests) >= 40 and set(drill.events.action) == {"kill", "start"}
    outages = drill.outages()
    assert (outages.down_s >= outages.planned_down_s).all(), outages   # each fault got its whole outage
    acknowledged = drill.acknowledged()
    assert len(acknowledged) >= 30
    orders = drill.settle(timeout=40)
    assert drill.lost() == [], orders[orders.status != "done"]
    deferred = set(requests.query("queued == 'deferred'").order_id.astype(int))
    assert deferred, "the broker was down under load: some orders were acknowledged before they could be published"
    assert deferred <= set(orders.query("requeued > 0").order_id), "the outbox sweep published each of them"
    assert (lab7.status().state == "running").all()


def test_a_broker_killed_under_load_loses_no_accepted_order(lab7):
    lab.until_ordering(lab7, lab.new_user(lab7, "Broker Drill"), 10)   # the breaker closed, orders flow
    drill = broker_kill_loses_no_accepted_order(lab7)
    assert drill["during_outage"] > 0, "while RabbitMQ was down, orders were still accepted (the outbox)"


def test_a_fault_that_outlasts_the_load_is_refused(lab7, buyer):
    with pytest.raises(Exception, match="lengthen duration_s"):
        ChaosDrill(lab7, buyer, 1, 5, [Fault(at_s=4, member="users-1", down_s=2)])
