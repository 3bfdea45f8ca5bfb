"""Lab 05 — queues: orders accepted at once, processed by Celery workers; retries, idempotency;
a broker that keeps its promise when it is SIGKILLed (the ``broker`` exercise: broker.yaml)."""

import asyncio
import inspect
import time
import uuid

import asyncpg
import httpx
import pandas as pd
import redis

from scalelab import aio, broker, db
from scalelab.errors import ScalelabError
from scalelab.exercise import CheckFailed, Exercise, NotAttempted, expect_status
from scalelab.waiting import wait_until
from shop.broker import BrokerSettings, BrokerSettingsError, parse

QUEUE = "orders"                     # shop.orders.QUEUE: the broker's list of waiting messages
DEAD_LETTER = "orders:dead-letter"   # shop.orders.DEAD_LETTER
TERMINAL = ("done", "failed", "dead")
ITEMS = [{"sku": "book-ddia", "quantity": 1, "price_cents": 3900}]


# -- helpers the checks and the notebook share -----------------------------------------
def redis_client(stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url(), socket_timeout=2, socket_connect_timeout=2, decode_responses=True)


def queue_depth(stack) -> int:
    """Messages waiting in the broker for a worker (not counting those a worker holds)."""
    return broker.depth(stack)


def new_user(stack, name: str = "Order Check") -> int:
    """A user to place orders for (orders reference users)."""
    return int(db.fetchval(stack.database_url(), "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id",
                           f"orders-{uuid.uuid4().hex[:10]}@example.com", name))


def place(api: httpx.Client, user_id: int, **flags) -> dict:
    """POST one order; the answer (202) as a dict, with the request's latency in ms."""
    started = time.perf_counter()
    r = api.post("/orders", json={"user_id": user_id, "items": ITEMS, **flags})
    elapsed_ms = (time.perf_counter() - started) * 1000
    expect_status(r, 202, "POST /orders", ": is the order service up? (stack.status(), stack.logs('orders-1'))")
    return {**r.json(), "post_ms": elapsed_ms}


def orders_frame(stack, ids: list[int]) -> pd.DataFrame:
    return db.frame(stack.database_url(), "SELECT id, status, attempts, last_error, created_at, done_at "
                    "FROM orders WHERE id = ANY($1::bigint[]) ORDER BY id", list(ids))


def wait_orders(stack, ids: list[int], timeout: float = 30.0, statuses=TERMINAL) -> pd.DataFrame:
    """Poll Postgres (bounded) until every order in ``ids`` has one of ``statuses``."""
    def not_all_finished(frame: pd.DataFrame) -> str:
        counts = frame.status.value_counts().to_dict() if len(frame) else {}
        return (f"after {timeout:.0f} s the {len(ids)} orders are {counts}, not all {'/'.join(statuses)}: "
                "are workers running? (stack.status(), stack.logs('worker-1'))")
    return wait_until(lambda: orders_frame(stack, ids), timeout, interval=0.05, error=CheckFailed,
                      done=lambda frame: len(frame) == len(ids) and bool(frame.status.isin(statuses).all()),
                      on_timeout=not_all_finished)


def effects(stack, ids: list[int]) -> int:
    """Payments recorded for these orders (the order's effect; at most one each, by the UNIQUE key)."""
    return int(db.fetchval(stack.database_url(), "SELECT count(*) FROM payments WHERE order_id = ANY($1::bigint[])",
                           list(ids)))


def deliveries(stack, ids: list[int]) -> pd.DataFrame:
    """Every delivery of these orders' tasks to a worker, as the workers logged them."""
    return db.frame(stack.database_url(),
                    "SELECT order_id, worker, retries, started_at, finished_at, outcome, error FROM order_attempts "
                    "WHERE order_id = ANY($1::bigint[]) ORDER BY id", list(ids))


def _started_at(stack, member: str) -> float | None:
    """When the member's current incarnation started (epoch seconds), or None if it is not running."""
    started = stack.status().set_index("member").started.get(member)
    return None if started is None or pd.isna(started) else started.timestamp()


def _unfinished(stack, member: str, since: float | None) -> int | None:
    return db.fetchval(stack.database_url(),
                       "SELECT order_id FROM order_attempts WHERE worker = $1 AND finished_at IS NULL "
                       "AND started_at >= to_timestamp($2) ORDER BY id DESC LIMIT 1", f"{member}@scalelab", since)


def holding(stack, member: str) -> int | None:
    """The order whose task worker ``member`` runs right now (started, not finished), if any.
    Deliveries a previous, killed incarnation of the member left unfinished do not count."""
    since = _started_at(stack, member)
    return None if since is None else _unfinished(stack, member, since)


def wait_holding(stack, member: str, timeout: float = 20.0, since: float | None = None) -> int:
    """The order worker ``member`` runs, as soon as it holds one (CheckFailed after ``timeout``).
    ``since``: when its incarnation started (read once here when not given), so each poll is one
    query — on Kubernetes a pod listing per poll could miss a task shorter than the poll."""
    since = _started_at(stack, member) if since is None else since
    if since is None:
        raise CheckFailed(f"{member} is not running: stack.start({member!r}) first")
    return wait_until(lambda: _unfinished(stack, member, since), timeout, interval=0.01, error=CheckFailed,
                      done=lambda order_id: order_id is not None,
                      on_timeout=f"{member} took no order within {timeout:.0f} s: are orders queued? "
                                 f"(stack.logs({member!r}))")


def kill_mid_task(stack, member: str, tries: int = 5) -> int:
    """Wait until worker ``member`` runs an order, SIGKILL it, return that order's id.

    A task can finish in the instant between "it holds one" and the signal (on Kubernetes the
    signal takes a second to reach the pod); then the worker is started again and the drill
    repeated (at most ``tries`` times) — place enough orders for that."""
    for _ in range(tries):
        since = _started_at(stack, member)
        wait_holding(stack, member, since=since)
        stack.kill(member, "KILL")
        if (lost := _unfinished(stack, member, since)) is not None:
            return lost
        stack.start(member)   # its task finished just before the signal: again
    raise CheckFailed(f"{member} finished its task before every one of {tries} kills")


def enqueue(stack, order_id: int, times: int = 1) -> None:
    """Publish the order's task again, ``times`` times: a duplicate delivery, on purpose."""
    from shop.config import Settings
    from shop.tasks import TASK, make_celery
    app = make_celery(Settings(redis_url=stack.redis_url(), rabbitmq_url=stack.rabbitmq_url()),
                      broker.settings(stack))   # the broker the stack's services use now
    try:
        for _ in range(times):
            app.send_task(TASK, args=[order_id], queue=QUEUE)
    finally:
        app.close()


def dead_letter(stack) -> list[dict]:
    return httpx.get(f"{stack.url('orders')}/orders/dead-letter", timeout=10).json()["items"]


def _require_async(fn, name: str) -> None:
    if not inspect.iscoroutinefunction(fn):
        raise CheckFailed(f"{name} must be `async def`: asyncpg's queries are awaited")


async def _new_order(conn, status: str = "pending") -> int:
    user = await conn.fetchval("INSERT INTO users (email, name) VALUES ($1, 'Check') RETURNING id",
                               f"check-{uuid.uuid4().hex[:10]}@example.com")
    return await conn.fetchval(
        "INSERT INTO orders (user_id, items, total_cents, request_hash, status) VALUES ($1, '[]', 3900, 'check', $2)"
        " RETURNING id", user, status)


# -- exercise 1: the idempotency guard ---------------------------------------------------
def _check_idempotency(stack, exercise) -> str:
    apply_once = exercise.function(stack, "apply_once")
    _require_async(apply_once, "apply_once")
    dsn = stack.database_url()
    copies = 16

    async def go():
        setup = await asyncpg.connect(dsn)
        conns = [await asyncpg.connect(dsn) for _ in range(copies)]
        try:
            order_id = await _new_order(setup)
            key = f"check-{uuid.uuid4().hex[:8]}"
            # 16 deliveries of the same order, each on its own connection, at the same moment.
            # A SHARE lock on payments lets reads through and holds every write back until all
            # 16 have reached theirs (or 5 s pass): a guard that checks, then inserts, meets
            # its race on every run, not only when the timing happens to line up.
            gate = setup.transaction()
            await gate.start()
            await setup.execute("LOCK TABLE payments IN SHARE MODE")
            pids = [c.get_server_pid() for c in conns]
            deliveries = asyncio.gather(*(apply_once(c, key, order_id, 3900) for c in conns), return_exceptions=True)
            deadline = time.monotonic() + 5
            while not deliveries.done() and time.monotonic() < deadline:
                held = await setup.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[]) "
                                            "AND wait_event_type = 'Lock'", pids)
                if held == copies:
                    break
                await asyncio.sleep(0.01)
            await gate.commit()
            results = await deliveries
            rows = await setup.fetch("SELECT order_id, amount_cents FROM payments WHERE idempotency_key = $1", key)
            other = await apply_once(conns[0], f"{key}-other", order_id, 3900)
            again = await apply_once(conns[0], key, order_id, 3900)
            return results, [dict(r) for r in rows], other, again
        finally:
            for c in conns:
                await db.close(c)
            await db.close(setup)

    try:
        results, rows, other, again = aio.run(go())
    except NotImplementedError:
        raise NotAttempted("apply_once() still raises NotImplementedError") from None
    except Exception as exc:   # learner code run outside the gather: name what it raised
        raise CheckFailed(f"apply_once() raised {type(exc).__name__}: {exc}") from None
    errors = [r for r in results if isinstance(r, BaseException)]
    if any(isinstance(e, NotImplementedError) for e in errors):
        raise NotAttempted("apply_once() still raises NotImplementedError")
    if any(isinstance(e, asyncpg.UniqueViolationError) for e in errors):
        raise CheckFailed(f"{len(errors)} of {copies} simultaneous deliveries failed with UniqueViolationError: two of "
                          "them passed a check before either inserted — let the INSERT itself decide "
                          "(ON CONFLICT (idempotency_key) DO NOTHING)")
    if errors:
        raise CheckFailed(f"apply_once() raised {type(errors[0]).__name__}: {errors[0]}")
    if not all(isinstance(r, bool) for r in results):
        raise CheckFailed(f"apply_once() returned {sorted({repr(r) for r in results})}: return True when this call "
                          "recorded the payment, False when it already existed (a bool)")
    if len(rows) != 1:
        raise CheckFailed(f"{copies} simultaneous deliveries of one order left {len(rows)} payments under its key, "
                          "expected exactly 1: insert into payments (the UNIQUE key is the guard)")
    if rows[0] != {"order_id": rows[0]["order_id"], "amount_cents": 3900}:
        raise CheckFailed(f"the payment row holds amount_cents={rows[0]['amount_cents']}, expected 3900")
    if results.count(True) != 1:
        raise CheckFailed(f"{copies} simultaneous deliveries: {results.count(True)} said True ('I recorded it'), "
                          "exactly 1 did: return whether your INSERT returned a row")
    if other is not True:
        raise CheckFailed("a payment under a different key was refused: the guard is per key, not per order or global")
    if again is not False:
        raise CheckFailed("a later delivery with the same key returned True: it must find the payment and return False")
    return (f"{copies} deliveries of one order at the same instant, on {copies} connections → 1 payment, "
            f"1 × True and {copies - 1} × False; a new key → True; the same key later → False")


idempotency = Exercise(
    name="idempotency",
    title="Exercise 1 · the idempotency guard apply_once()",
    checker=_check_idempotency,
    hints=[
        "payments.idempotency_key is UNIQUE: let Postgres decide who is first. A SELECT then an INSERT is two "
        "steps, and two deliveries fit between them.",
        "`INSERT INTO payments (idempotency_key, order_id, amount_cents) VALUES ($1, $2, $3) "
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id` returns a row only when it inserted one.",
        "`payment_id = await conn.fetchval(<that SQL>, key, order_id, amount_cents)`; "
        "`return payment_id is not None`.",
    ],
    reference="shop.reference.idempotency",
    handle="lab05.idempotency",
)


# -- exercise 2: the task body -----------------------------------------------------------
class _Boom(Exception):
    """What the check's fake payment call raises (a transient failure)."""


def _check_task_directly(stack, process_order) -> list[str]:
    """Run the learner's process_order here, against the real database, with a fake pay()."""
    dsn = stack.database_url()

    async def go():
        conn, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            found = []
            calls = []

            async def pay(order):
                calls.append(dict(order))
                # What GET /orders/{id} would show while the slow call runs (another connection).
                found.append(await watcher.fetchval("SELECT status FROM orders WHERE id = $1", order["id"]))
                return True

            async def status(order_id):
                return await watcher.fetchval("SELECT status FROM orders WHERE id = $1", order_id)

            pending = await _new_order(conn)
            first = await process_order(conn, pending, pay)
            if not calls:
                raise CheckFailed("process_order() never called pay(order): the payment is the order's work")
            if "id" not in calls[0]:
                raise CheckFailed(f"pay() was given {calls[0]}: pass the order row (with its id) you claimed")
            if found[0] != "processing":
                raise CheckFailed(f"while pay() ran, another connection saw status {found[0]!r}: set 'processing' "
                                  "(and commit it: not inside one long transaction) before the slow call")
            if (s := await status(pending)) != "done" or first != "done":
                raise CheckFailed(f"after pay() succeeded the order is {s!r} and process_order returned {first!r}: "
                                  "mark it 'done' and return 'done'")
            n = len(calls)
            second = await process_order(conn, pending, pay)
            if len(calls) != n:
                raise CheckFailed("a second delivery of a done order called pay() again: a redelivery of a finished "
                                  "order must do nothing (claim it only while it is pending/processing/retrying)")
            if (s := await status(pending)) != "done" or second != "skipped":
                raise CheckFailed(f"a second delivery of a done order left it {s!r} and returned {second!r}: "
                                  "leave it 'done' and return 'skipped'")

            stuck = await _new_order(conn, status="processing")   # what a killed worker leaves behind
            await process_order(conn, stuck, pay)
            if (s := await status(stuck)) != "done":
                raise CheckFailed(f"an order left 'processing' by a worker that died ended {s!r} after its "
                                  "redelivery: 'processing' must be claimable too — that worker is gone")
            for terminal in ("dead", "failed"):
                finished = await _new_order(conn, status=terminal)
                n = len(calls)
                await process_order(conn, finished, pay)
                if len(calls) != n or (s := await status(finished)) != terminal:
                    raise CheckFailed(f"a redelivered {terminal!r} order was processed again (now {s!r}): "
                                      "only pending, processing and retrying orders are claimed")

            async def failing_pay(order):
                raise _Boom("payment service unavailable")

            flaky = await _new_order(conn)
            try:
                await process_order(conn, flaky, failing_pay)
            except _Boom:
                pass
            else:
                raise CheckFailed("when pay() raised, process_order() returned normally: let the exception "
                                  "propagate, so the worker can retry the order")
            if (s := await status(flaky)) == "done":
                raise CheckFailed("when pay() raised, the order was still marked 'done': mark it done only after "
                                  "pay() returned")
            return ["claimed → 'processing' during pay() → 'done'; a second delivery skipped; a 'processing' leftover "
                    "finished; dead/failed left alone; a failing pay() propagates"]
        finally:
            await db.close(conn)
            await db.close(watcher)

    try:
        return aio.run(go())
    except (CheckFailed, _Boom):
        raise
    except NotImplementedError:
        raise NotAttempted("process_order() still raises NotImplementedError") from None
    except Exception as exc:
        raise CheckFailed(f"process_order() raised {type(exc).__name__}: {exc}") from None


def _check_order_task(stack, exercise) -> str:
    process_order = exercise.function(stack, "process_order")
    _require_async(process_order, "process_order")
    if not (exercise.workspace_file(stack).parent / "idempotency.py").exists():
        raise CheckFailed("idempotency.py is not in the workspace: do exercise 1 first (pay() calls it)")
    proved = _check_task_directly(stack, process_order)

    # Live: the workers load order_task.py when they start.
    if not stack.members("worker"):
        stack.scale("worker", 1)
    stack.restart("worker")
    user = new_user(stack)
    with httpx.Client(base_url=stack.url("orders"), timeout=10) as api:
        order = place(api, user)
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = api.get(f"/orders/{order['id']}").json()["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in TERMINAL:
                break
            time.sleep(0.02)
        final = api.get(f"/orders/{order['id']}").json()
        if final["status"] == "failed":
            raise CheckFailed(f"the worker could not run your task: {final['last_error']}")
        if final["status"] != "done":
            raise CheckFailed(f"order {order['id']} went {' → '.join(seen)} in 20 s, not to 'done': "
                              "stack.logs('worker-1') shows what the worker did")
        if "processing" not in seen:
            raise CheckFailed(f"GET /orders/{order['id']} showed {' → '.join(seen)}: never 'processing' while the "
                              "payment ran")
        flaky = place(api, user, fail_first=1)
        flaky_final = wait_orders(stack, [flaky["id"]], timeout=20)
        if flaky_final.status.iloc[0] != "done":
            raise CheckFailed(f"an order whose first payment call fails ended {flaky_final.status.iloc[0]!r} "
                              f"({flaky_final.last_error.iloc[0]}): a retry must finish it")
    paid = effects(stack, [order["id"], flaky["id"]])
    if paid != 2:
        raise CheckFailed(f"2 orders done, {paid} payments recorded: pay() must run once per order")
    proved.append(f"live: POST → {' → '.join(seen)} on {', '.join(stack.members('worker'))}; a failing first "
                  f"payment call → done after {int(flaky_final.attempts.iloc[0])} calls; 2 orders, 2 payments")
    return "; ".join(proved)


order_task = Exercise(
    name="order_task",
    title="Exercise 2 · the task body process_order()",
    checker=_check_order_task,
    hints=[
        "Claim the order with one UPDATE ... WHERE id = $1 AND status IN (...) RETURNING ...: no row back means "
        "there is nothing to do (done, dead or failed already) — return 'skipped'.",
        "Which statuses may be claimed? 'pending' and 'retrying' of course, and 'processing': after a worker died "
        "mid-task, its redelivery finds the order still 'processing'.",
        "After the claim: `await pay(dict(order))` (do not catch its errors), then UPDATE the status to 'done' "
        "with done_at = clock_timestamp(), and return 'done'.",
    ],
    reference="shop.reference.order_task",
    handle="lab05.order_task",
)


# -- exercise 3: a broker that keeps the promise ---------------------------------------------
DRILL_BEFORE, DRILL_AFTER = 20, 10   # the check's crash drill: orders accepted before the kill, after the restart

# Why a setting loses accepted orders when the broker process dies (the drill shows it).
CRASH_LOSES = {
    ("redis", "appendonly", False): "appendonly no: Redis keeps the queue only in memory, and a restarted Redis "
                                    "comes back empty",
    ("rabbitmq", "durable", False): "durable: false — the queue itself does not survive a restart, nor the "
                                    "messages in it",
    ("rabbitmq", "persistent", False): "persistent: false — transient messages are never written to disk: a "
                                       "restarted RabbitMQ drops them, even from a durable queue",
}
# Risks the check names before any drill: a killed process cannot show the fsync ones (the page
# cache survives it), and what RabbitMQ without confirms loses varies from drill to drill (step
# 11 measures it) — a setting is not right because one drill happened to lose nothing.
UNSEEN_RISK = {
    ("redis", "appendfsync", "everysec"):
        "appendfsync everysec: Valkey writes each message to the append-only file before it answers but forces "
        "it to disk only once a second. A killed Valkey loses nothing (the kernel still holds its writes), a power "
        "cut or a kernel crash loses up to the last second of accepted orders. The disk before the 202: always",
    ("redis", "appendfsync", "no"):
        "appendfsync no: the kernel decides when the append-only file reaches the disk (within about 30 s): a "
        "power cut loses whatever it had not written yet. The disk before the 202: always",
    ("rabbitmq", "confirm_publish", False):
        "confirm_publish: false — the publish returns before RabbitMQ has the message on disk (it writes "
        "persistent messages when it must, not for each one), and the order service answers 202: a broker "
        "killed then loses what it had not written yet, and a publish into a connection that just died can "
        "still be answered 202 (step 11 counts both). The confirm closes it: confirm_publish: true",
}


def _risks(chosen: BrokerSettings, table: dict) -> list[str]:
    return [why for (kind, name, value), why in table.items()
            if chosen.broker == kind and getattr(chosen, name) == value
            and (name != "appendfsync" or chosen.appendonly)]


def _check_broker(stack, exercise) -> str:
    path = stack.workspace / "broker.yaml"
    if not path.exists():
        raise NotAttempted(f"run the exercise cell: it writes broker.yaml into {path.parent}")
    try:
        chosen = parse(path.read_text())
    except BrokerSettingsError as exc:
        raise CheckFailed(str(exc)) from None
    if chosen is None:
        raise NotAttempted("broker.yaml holds no settings yet: `broker: ...` and the settings that keep the promise")
    if unseen := _risks(chosen, UNSEEN_RISK):
        raise CheckFailed(unseen[0])
    try:
        broker.apply(stack, workers=0)
        drill = broker.crash_drill(stack, before=DRILL_BEFORE, after=DRILL_AFTER, workers=2)
    except ScalelabError as exc:
        raise CheckFailed(str(exc)) from None
    stack.scale("worker", 2)
    lost = _risks(chosen, CRASH_LOSES)
    if drill["lost"] or lost:
        raise CheckFailed(f"{drill['member']} SIGKILLed with {drill['waiting_at_kill']} order messages waiting: "
                          f"{drill['lost']} of {drill['accepted']} accepted orders never done — "
                          f"{(lost or ['the broker lost them'])[0]}")
    return (f"{chosen.label()}: {drill['member']} SIGKILLed with {drill['waiting_at_kill']} order messages waiting "
            f"→ 0 of {drill['accepted']} accepted orders lost, all done {drill['settle_s']:.1f} s after the workers "
            f"started; {drill['orders/s']:.0f} orders/s accepted before the kill")


broker_settings = Exercise(
    name="broker",
    title="Exercise 3 · a broker that keeps the 202's promise (broker.yaml)",
    checker=_check_broker,
    hints=[
        "Two brokers can keep it. The stack's Redis, once it writes every message to its append-only file and "
        "forces that to disk before it answers; or RabbitMQ, with a durable queue, persistent messages, and a "
        "publisher that waits for the broker's confirm before the 202.",
        "Redis: `broker: redis`, `appendonly: yes` and `appendfsync: ...` (no, everysec or always: which one puts "
        "the message on disk before the answer?). RabbitMQ: `broker: rabbitmq` and durable, persistent, "
        "confirm_publish — which of them is off by default in Celery?",
        "`broker: rabbitmq`, `durable: true`, `persistent: true`, `confirm_publish: true` (or `broker: redis`, "
        "`appendonly: yes`, `appendfsync: always`).",
    ],
    reference="stack/shop/reference/broker.yaml",
    handle="lab05.broker_settings",
)
