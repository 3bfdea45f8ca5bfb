"""Lab 05 on a real stack: the order API, Celery workers, redelivery and the idempotency guard."""

import time
import uuid

import httpx
import pytest

from scalelab import broker, db
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import lab05
from scalelab.references import solve

from conftest import broker_kill_loses_no_accepted_order, solved_stack

lab5 = solved_stack(5)   # Postgres, Redis, users, orders, a worker


@pytest.fixture
def orders_api(lab5):
    with httpx.Client(base_url=lab5.url("orders"), timeout=10) as client:
        yield client


@pytest.fixture
def user(lab5) -> int:
    return lab05.new_user(lab5, "Test Buyer")


def test_post_answers_202_at_once_and_get_follows_the_order_to_done(lab5, orders_api, user):
    lab5.scale("worker", 1)
    started = time.perf_counter()
    r = orders_api.post("/orders", json={"user_id": user, "items": [{"sku": "pen", "quantity": 3, "price_cents": 150}]})
    post_s = time.perf_counter() - started
    assert r.status_code == 202, r.text
    order = r.json()
    assert order["status"] == "pending" and order["total_cents"] == 450 and r.headers["location"] == f"/orders/{order['id']}"
    assert post_s < 0.5 * 0.9, "POST waited for the work (PROCESS_S = 0.5 s)"
    done = lab05.wait_orders(lab5, [order["id"]], timeout=20)
    assert done.status.tolist() == ["done"]
    got = orders_api.get(f"/orders/{order['id']}").json()
    assert got["status"] == "done" and got["attempts"] == 1 and got["done_at"]
    assert lab05.effects(lab5, [order["id"]]) == 1


def test_an_unknown_order_is_a_404_json_error(orders_api):
    r = orders_api.get("/orders/987654321")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = orders_api.get("/orders/not-a-number")
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


@pytest.mark.parametrize("body", [
    {},
    {"user_id": 1, "items": []},
    {"user_id": 1, "items": [{"sku": "pen", "quantity": 0, "price_cents": 100}]},
    {"user_id": 1, "items": [{"sku": "pen", "quantity": 1, "price_cents": -5}]},
    {"user_id": 1, "items": [{"sku": "pen", "quantity": 1, "price_cents": 100}], "coupon": "FREE"},
    {"user_id": 1, "items": [{"sku": "pen", "quantity": 1, "price_cents": 100}], "work": "gpu"},
], ids=["empty", "no-items", "zero-quantity", "negative-price", "unknown-field", "bad-work"])
def test_a_bad_order_is_a_422_json_error_and_stores_nothing(lab5, orders_api, body):
    count = lambda: db.fetchval(lab5.database_url(), "SELECT count(*) FROM orders")
    before = count()
    r = orders_api.post("/orders", json=body)
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    assert count() == before


def test_an_order_for_an_unknown_user_is_a_404(orders_api):
    r = orders_api.post("/orders", json={"user_id": 10**12, "items": lab05.ITEMS})
    assert r.status_code == 404 and r.json()["error"] == "unknown_user"


def test_a_retried_post_with_its_idempotency_key_gets_the_same_order_and_a_different_body_a_409(lab5, orders_api, user):
    key = f"client-{uuid.uuid4().hex}"
    body = {"user_id": user, "items": lab05.ITEMS}
    first = orders_api.post("/orders", json=body, headers={"Idempotency-Key": key})
    again = orders_api.post("/orders", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers.get("idempotent-replayed") == "true"
    other = orders_api.post("/orders", json={**body, "items": [{"sku": "x", "quantity": 2, "price_cents": 1}]},
                            headers={"Idempotency-Key": key})
    assert other.status_code == 409 and other.json()["error"] == "conflict"
    lab05.wait_orders(lab5, [first.json()["id"]], timeout=20)
    assert len(lab05.deliveries(lab5, [first.json()["id"]])) == 1, "a replayed POST enqueued a second task"


def test_concurrent_retries_of_one_post_create_one_order_and_one_task(lab5, user):
    import asyncio

    key = f"burst-{uuid.uuid4().hex}"

    async def burst():
        async with httpx.AsyncClient(base_url=lab5.url("orders"), timeout=10) as client:
            return await asyncio.gather(*(client.post("/orders", json={"user_id": user, "items": lab05.ITEMS},
                                                      headers={"Idempotency-Key": key}) for _ in range(8)))

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [202] * 8
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1 and sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert db.fetchval(lab5.database_url(), "SELECT count(*) FROM orders WHERE idempotency_key = $1", key) == 1
    lab05.wait_orders(lab5, list(ids), timeout=20)
    assert len(lab05.deliveries(lab5, list(ids))) == 1


def test_duplicate_deliveries_running_at_the_same_time_charge_once(lab5, orders_api, user):
    lab5.scale("worker", 3)
    order = lab05.place(orders_api, user)
    lab05.enqueue(lab5, order["id"], times=3)        # 4 deliveries of one order, 3 idle workers
    deadline = time.monotonic() + 30
    while (d := lab05.deliveries(lab5, [order["id"]])).finished_at.notna().sum() < 4:
        assert time.monotonic() < deadline, d
        time.sleep(0.05)
    overlapping = sum(1 for _, a in d.iterrows() for _, b in d.iterrows()
                      if a.started_at < b.started_at < a.finished_at)
    assert overlapping >= 1 and d.worker.nunique() >= 2, "the deliveries did not run concurrently"
    assert lab05.effects(lab5, [order["id"]]) == 1
    assert lab05.orders_frame(lab5, [order["id"]]).status.tolist() == ["done"]


def test_a_worker_killed_mid_task_loses_no_order(lab5, orders_api, user):
    lab5.scale("worker", 2)
    ids = [lab05.place(orders_api, user)["id"] for _ in range(8)]
    held = lab05.kill_mid_task(lab5, "worker-1")       # SIGKILL while it runs an order: no ack
    done = lab05.wait_orders(lab5, ids, timeout=40)     # worker-2 gets it back after the visibility timeout
    assert done.status.tolist() == ["done"] * len(ids)
    assert lab05.effects(lab5, ids) == len(ids)
    held_deliveries = lab05.deliveries(lab5, [held])
    assert len(held_deliveries) >= 2 and held_deliveries.finished_at.isna().iloc[0]
    lab5.start("worker-1")


def test_a_transient_failure_is_retried_with_growing_gaps_and_a_poison_order_ends_dead(lab5, orders_api, user):
    lab5.scale("worker", 2)
    # The flaky order alone first: a poison attempt holding the other worker would delay its
    # retries by up to a payment call and blur the gaps measured.
    flaky = lab05.place(orders_api, user, fail_first=2)
    lab05.wait_orders(lab5, [flaky["id"]], timeout=40)
    poison = lab05.place(orders_api, user, fail_first=1000)
    final = lab05.wait_orders(lab5, [flaky["id"], poison["id"]], timeout=40).set_index("id")
    assert final.loc[flaky["id"], "status"] == "done" and final.loc[flaky["id"], "attempts"] == 3
    starts = lab05.deliveries(lab5, [flaky["id"]]).started_at
    gaps = starts.diff().dt.total_seconds().dropna().tolist()
    # each gap = the 0.5 s payment call + a countdown of 0.25 s, then 0.5 s
    assert len(gaps) == 2 and gaps[0] >= 0.5 + 0.25 and gaps[1] >= 0.5 + 0.5 and gaps[1] > gaps[0]
    assert final.loc[poison["id"], "status"] == "dead" and final.loc[poison["id"], "attempts"] == 4
    got = orders_api.get(f"/orders/{poison['id']}").json()
    assert got["status"] == "dead" and "PaymentUnavailable" in got["last_error"]
    letters = [entry for entry in lab05.dead_letter(lab5) if entry["order_id"] == poison["id"]]
    assert len(letters) == 1 and "PaymentUnavailable" in letters[0]["error"]
    assert letters[0]["reason"] == "rejected", "RabbitMQ's dead-letter exchange routed the rejected message"
    assert len(lab05.dead_letter(lab5)) >= 1, "reading the dead-letter queue takes nothing from it"
    assert lab05.effects(lab5, [poison["id"]]) == 0


def test_a_terminated_worker_finishes_the_order_it_runs_before_it_exits(lab5, orders_api, user):
    lab5.scale("worker", 2)
    ids = [lab05.place(orders_api, user)["id"] for _ in range(4)]
    running = lab05.wait_holding(lab5, "worker-2")
    lab5.kill("worker-2", "TERM")                       # Celery's warm shutdown; returns once it exited
    by_worker2 = lab05.deliveries(lab5, ids).query("worker == 'worker-2@scalelab'")
    assert running in by_worker2.order_id.tolist() and by_worker2.finished_at.notna().all()
    assert (lab05.wait_orders(lab5, ids, timeout=30).status == "done").all()
    assert lab05.effects(lab5, ids) == len(ids)
    lab5.start("worker-2")


# -- the checks can fail: wrong answers in the workspace --------------------------------
CHECK_THEN_INSERT = '''
async def apply_once(conn, key, order_id, amount_cents):
    if await conn.fetchval("SELECT 1 FROM payments WHERE idempotency_key = $1", key):
        return False
    await conn.execute("INSERT INTO payments (idempotency_key, order_id, amount_cents) VALUES ($1, $2, $3)",
                       key, order_id, amount_cents)
    return True
'''

FORGETS_PROCESSING = '''
async def process_order(conn, order_id, pay):
    order = await conn.fetchrow("UPDATE orders SET status = 'processing' WHERE id = $1"
                                " AND status IN ('pending', 'retrying') RETURNING id, total_cents", order_id)
    if order is None:
        return "skipped"
    await pay(dict(order))
    await conn.execute("UPDATE orders SET status = 'done', done_at = now() WHERE id = $1", order_id)
    return "done"
'''

STUB = '''
async def process_order(conn, order_id, pay):
    # YOUR CODE HERE
    raise NotImplementedError()
'''


@pytest.fixture
def workspace(lab5):
    yield lab5.workspace
    solve(lab5)   # the reference again, for the other tests


@pytest.mark.parametrize("name, code, exercise, expected", [
    ("idempotency", CHECK_THEN_INSERT, "idempotency", "UniqueViolationError"),
    ("order_task", FORGETS_PROCESSING, "order_task", "'processing' must be claimable"),
    ("order_task", STUB, "order_task", "not attempted yet"),
], ids=["check-then-insert", "processing-not-claimed", "stub"])
def test_a_wrong_answer_fails_its_check_saying_what_is_wrong(lab5, workspace, name, code, exercise, expected):
    (workspace / f"{name}.py").write_text(code)
    with pytest.raises(CheckFailed, match=expected):
        getattr(lab05, exercise).check(lab5)


@pytest.fixture
def broker_file(lab5, request):
    yield lab5.workspace / "broker.yaml"
    solve(lab5)
    if request.node.callspec.params.get("live"):   # the check ran the stack on the wrong settings
        broker.apply(lab5, workers=1)               # the reference settings again, running


# (broker.yaml, what the check says, whether a live crash drill showed it)
WRONG_BROKERS = [
    ("# YOUR CODE HERE\n", "not attempted yet", False),
    ("broker: rabbitmq\nconfirm: true\n", "unknown setting 'confirm'", False),
    ("broker: redis\nappendonly: yes\n", "appendfsync everysec", False),
    ("broker: redis\nappendonly: yes\nappendfsync: no\n", "appendfsync no", False),
    ("broker: rabbitmq\ndurable: true\npersistent: true\n", "confirm_publish: false", False),
    ("broker: redis\n", "appendonly no: Redis keeps the queue only in memory", True),
    ("broker: rabbitmq\nconfirm_publish: true\npersistent: false\n", "persistent: false", True),
]


@pytest.mark.parametrize("text, expected, live", WRONG_BROKERS,
                         ids=["stub", "unknown-setting", "everysec", "fsync-no", "no-confirms", "in-memory", "transient"])
def test_a_broker_that_breaks_the_promise_fails_its_check_naming_the_setting(lab5, broker_file, text, expected, live):
    broker_file.write_text(text)
    with pytest.raises(CheckFailed, match=expected) as failed:
        lab05.broker_settings.check(lab5)
    assert isinstance(failed.value, NotAttempted) == (expected == "not attempted yet")
    assert ("accepted orders never done" in str(failed.value)) == live, "a live loss is reported as measured"


def test_the_solved_stack_runs_rabbitmq_with_confirms_and_a_broker_kill_under_load_loses_no_accepted_order(lab5):
    assert broker.settings(lab5).label() == "rabbitmq, durable true, persistent true, confirm_publish true"
    lab5.scale("worker", 2)
    drill = broker_kill_loses_no_accepted_order(lab5)
    assert drill["refused"] > 0, "orders placed while RabbitMQ was down were refused (503), not accepted"


def test_with_the_broker_down_a_post_is_a_503_and_the_order_says_it_was_not_queued(lab5, orders_api, user):
    """Late in this module: the broker restarts, and the workers must reconnect."""
    member = broker.member(lab5)
    lab5.kill(member)
    try:
        started = time.perf_counter()
        r = orders_api.post("/orders", json={"user_id": user, "items": lab05.ITEMS})
        took = time.perf_counter() - started
        assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
        assert took < 3, f"a dead broker held the request {took:.1f} s"
        assert orders_api.get("/ready").status_code == 503
        stored = db.fetch(lab5.database_url(), "SELECT status, last_error FROM orders ORDER BY id DESC LIMIT 1")[0]
        assert stored["status"] == "failed" and "not queued" in stored["last_error"]
    finally:
        lab5.start(member)
    assert orders_api.get("/ready").status_code == 200
    after = lab05.place(orders_api, user)                # the workers reconnected on their own
    assert lab05.wait_orders(lab5, [after["id"]], timeout=60).status.tolist() == ["done"]
