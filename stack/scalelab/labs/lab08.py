"""Lab 08 — events and CQRS: an event log (transactional outbox), a read model projected into
Redis by a consumer group, catch-up after a crash, replay from zero."""

import sys
import threading
import time
import uuid
from typing import Any, cast

import httpx
import pandas as pd
import redis

from scalelab import db
from scalelab.exercise import CheckFailed, Exercise, NotAttempted, expect_status
from scalelab.labs import eventlog_kafka, lab05
from scalelab.labs.eventlog_kafka import on_kafka, topic_frame  # noqa: F401 (lab08.*)
from scalelab.waiting import wait_until

STREAM = "orders.events"      # shop.events.STREAM
GROUP = "projector"           # shop.events.GROUP
STATS = "projector:stats"     # shop.projector.STATS
MEMBER = "projector-1"
READ_MODEL = "rm:*"
TERMINAL = lab05.TERMINAL


# -- helpers the checks and the notebook share -----------------------------------------
def redis_client(stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url(), socket_timeout=5, socket_connect_timeout=2, decode_responses=True)


def events_frame(stack, ids: list[int] | None = None) -> pd.DataFrame:
    """The event log (oldest first), for these orders or all."""
    sql = ("SELECT seq, order_id, type, data->>'status' AS status, (data->>'user_id')::bigint AS user_id, "
           "(data->>'total_cents')::bigint AS total_cents, created_at, published_at FROM order_events")
    if ids is None:
        return db.frame(stack.database_url(), sql + " ORDER BY seq")
    return db.frame(stack.database_url(), sql + " WHERE order_id = ANY($1::bigint[]) ORDER BY seq", list(ids))


def place_orders(stack, n: int, fail_every: int = 5, users: int = 3, pause_s: float = 0.0,
                 on_placed=None) -> list[int]:
    """POST ``n`` orders for ``users`` new buyers (every ``fail_every``-th one's first payment fails,
    so its log shows a retry); the ids. ``on_placed(i)`` runs after order ``i``."""
    buyers = [lab05.new_user(stack, f"Event Buyer {k}") for k in range(users)]
    ids = []
    with httpx.Client(base_url=stack.url("orders"), timeout=10) as api:
        for i in range(n):
            flags = {"fail_first": 1} if fail_every and i % fail_every == fail_every - 1 else {}
            r = api.post("/orders", json={"user_id": buyers[i % users],
                                          "items": [{"sku": f"sku-{i % 7}", "quantity": 1 + i % 3,
                                                     "price_cents": 100 + 37 * i}], **flags})
            expect_status(r, 202, "POST /orders", ": stack.logs('orders-1')")
            ids.append(r.json()["id"])
            if on_placed:
                on_placed(i)
            if pause_s:
                time.sleep(pause_s)
    return ids


def fold_check(stack, ids: list[int] | None = None) -> dict:
    """Rebuild every order from its events alone (shop.events.fold) and compare with its row."""
    from shop.events import fold
    rows = db.fetch(stack.database_url(), "SELECT id, user_id, status, total_cents FROM orders"
                    + ("" if ids is None else " WHERE id = ANY($1::bigint[])") + " ORDER BY id",
                    *([] if ids is None else [list(ids)]))
    log = db.fetch(stack.database_url(), "SELECT seq, order_id, type, data FROM order_events"
                   + ("" if ids is None else " WHERE order_id = ANY($1::bigint[])") + " ORDER BY seq",
                   *([] if ids is None else [list(ids)]))
    by_order: dict[int, list] = {}
    for event in log:
        by_order.setdefault(event["order_id"], []).append(event)
    differ = []
    for row in rows:
        state = fold(by_order.get(row["id"], []))
        if state is None or (state["status"], state["user_id"], state["total_cents"]) != \
                (row["status"], row["user_id"], row["total_cents"]):
            differ.append((row["id"], dict(row), state))
    if differ:
        raise CheckFailed(f"{len(differ)} of {len(rows)} orders rebuilt from their events differ from their rows, "
                          f"e.g. {differ[0]}")
    return {"orders": len(rows), "events": len(log)}


def expected_read_model(stack) -> dict:
    """The read model as it must be, computed in Postgres from the write model (orders) and the log."""
    dsn = stack.database_url()
    orders = db.fetch(dsn, "SELECT o.id, o.user_id, o.status, o.total_cents, count(e.seq) AS events, max(e.seq) AS seq "
                      "FROM orders o JOIN order_events e ON e.order_id = o.id GROUP BY o.id")
    model: dict = {}
    for o in orders:
        model[f"rm:order:{o['id']}"] = {"status": o["status"], "user_id": str(o["user_id"]),
                                        "total_cents": str(o["total_cents"]), "seq": str(o["seq"]),
                                        "events": str(o["events"])}
        user = model.setdefault(f"rm:user:{o['user_id']}", {"orders": "0"})
        user["orders"] = str(int(user["orders"]) + 1)
        if o["status"] == "done":
            user["done"] = str(int(user.get("done", 0)) + 1)
            user["spent_cents"] = str(int(user.get("spent_cents", 0)) + o["total_cents"])
        model.setdefault(f"rm:user:{o['user_id']}:orders", set()).add(str(o["id"]))
    return model


def dump_read_model(stack) -> dict:
    """Every key of the read model (rm:*) with its value: hashes as dicts, sorted sets as sets of members."""
    client = redis_client(stack)
    try:
        model: dict[str, Any] = {}
        for key in client.scan_iter(READ_MODEL, count=1000):
            kind = cast(str, client.type(key))   # decode_responses: a str (the stubs say bytes | str)
            if kind == "hash":
                model[key] = client.hgetall(key)
            elif kind == "zset":
                model[key] = set(client.zrange(key, 0, -1))
            else:
                model[key] = f"<{kind}>"
        return model
    finally:
        client.close()


def diff(expected: dict, actual: dict, limit: int = 3) -> list[str]:
    out = []
    for key in sorted(set(expected) | set(actual)):
        if expected.get(key) != actual.get(key):
            out.append(f"{key}: expected {expected.get(key)}, read model has {actual.get(key)}")
    return out[:limit] + ([f"... {len(out) - limit} more"] if len(out) > limit else [])


def backlog(stack) -> dict:
    """What the projector has not done yet: events not relayed, stream entries not delivered or not acked
    (on Kafka: messages in the topic and the group's lag, eventlog_kafka.backlog)."""
    if on_kafka(stack):
        return eventlog_kafka.backlog(stack)
    client = redis_client(stack)
    try:
        unpublished = int(db.fetchval(stack.database_url(),
                                      "SELECT count(*) FROM order_events WHERE published_at IS NULL"))
        groups = {g["name"]: g for g in client.xinfo_groups(STREAM)} if client.exists(STREAM) else {}
        group = groups.get(GROUP, {})
        return {"unpublished": unpublished, "stream": int(client.xlen(STREAM)) if client.exists(STREAM) else 0,
                "undelivered": int(group.get("lag") or 0), "pending": int(group.get("pending") or 0)}
    finally:
        client.close()


def unacknowledged(left: dict) -> int:
    """Events relayed and not yet applied and acknowledged (Stream) or committed (Kafka)."""
    return left["lag"] if "lag" in left else left["undelivered"] + left["pending"]


def stats(stack) -> dict:
    client = redis_client(stack)
    try:
        return {k: int(v) for k, v in client.hgetall(STATS).items()}
    finally:
        client.close()


def wait_orders(stack, ids: list[int], timeout: float = 60.0) -> pd.DataFrame:
    return lab05.wait_orders(stack, ids, timeout=timeout)


def wait_caught_up(stack, timeout: float = 30.0) -> float:
    """Poll (bounded) until the read model equals the projection of Postgres; seconds it took."""
    started = time.monotonic()
    while True:
        expected, actual = expected_read_model(stack), dump_read_model(stack)
        if expected == actual:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            problems = diff(expected, actual)
            raise CheckFailed(f"after {timeout:.0f} s the read model still differs from Postgres "
                              f"({len(problems)} keys shown): " + "; ".join(problems)
                              + f" — backlog {backlog(stack)}, projector stats {stats(stack)}; "
                              "stack.logs('projector-1') says what the projector did")
        time.sleep(0.05)


def totals(model: dict) -> dict:
    """Sums over a read model: orders, done, spent_cents, events applied."""
    users = [v for k, v in model.items() if k.startswith("rm:user:") and isinstance(v, dict)]
    orders = [v for k, v in model.items() if k.startswith("rm:order:")]
    return {"orders": sum(int(u.get("orders", 0)) for u in users), "done": sum(int(u.get("done", 0)) for u in users),
            "spent_cents": sum(int(u.get("spent_cents", 0)) for u in users),
            "events": sum(int(o.get("events", 0)) for o in orders)}


# -- the drills (the notebook and the tests run these) -----------------------------------
def crash_a_consumer(stack, entries: int = 5) -> int:
    """Read ``entries`` new stream entries as a second consumer and never acknowledge them:
    what a consumer that crashed mid-batch leaves pending (done by hand, so the restart
    always has something to reclaim: a SIGKILL lands between batches most of the time).
    How many it took."""
    client = redis_client(stack)
    try:
        # RESP2 (redis-py's default): [[stream, [(entry_id, fields), ...]]]; the stubs also allow RESP3's dict
        got = cast(list[list[Any]], client.xreadgroup(GROUP, "crashed-consumer", {STREAM: ">"}, count=entries))
        return sum(len(batch) for _stream, batch in got or [])
    finally:
        client.close()


def republish(stack, last: int = 10) -> int:
    """Mark the newest ``last`` events unpublished again: the relay publishes them a second
    time, exactly what it does after dying between XADD and its COMMIT. How many."""
    return len(db.fetch(stack.database_url(),
                        "UPDATE order_events SET published_at = NULL WHERE seq IN "
                        "(SELECT seq FROM order_events ORDER BY seq DESC LIMIT $1) RETURNING seq", last))


def wait_relayed(stack, timeout: float = 20.0) -> None:
    wait_until(lambda: not backlog(stack)["unpublished"], timeout, interval=0.05, error=CheckFailed,
               on_timeout=f"events still unpublished after {timeout:.0f} s: is the relay up? stack.logs('relay-1')")


def kill_drill(stack, n: int = 40, kill_after: int | None = None, duplicates: int = 10) -> dict:
    """Place ``n`` orders; SIGKILL the projector after ``kill_after`` of them; the workers finish
    every order and the relay keeps publishing while it is dead; a second consumer takes a few
    entries and "crashes" (never acks); the relay publishes the newest ``duplicates`` events a
    second time. Restart the projector and time how long until the read model equals Postgres."""
    kill_after = n // 3 if kill_after is None else kill_after
    killed = threading.Event()

    def on_placed(i):
        if i + 1 == kill_after:
            stack.kill(MEMBER, "KILL")
            killed.set()

    before = stats(stack)
    ids = place_orders(stack, n, on_placed=on_placed)
    if not killed.is_set():
        raise CheckFailed("the projector was never killed: kill_after must be at most n")
    wait_orders(stack, ids)
    wait_relayed(stack)
    # On Kafka there is no entry to hold: a member's uncommitted batch comes back from the committed offset.
    held = 0 if on_kafka(stack) else crash_a_consumer(stack)
    republished = republish(stack, duplicates)
    wait_relayed(stack)
    at_restart = backlog(stack)
    trace = [{"t_s": 0.0, "unacknowledged": unacknowledged(at_restart)}]
    started = time.monotonic()
    stack.start(MEMBER)
    ready_s = time.monotonic() - started
    while True:   # the backlog, sampled often (cheap: one count and one XINFO) until it is gone
        left = backlog(stack)
        unacked = unacknowledged(left)
        trace.append({"t_s": time.monotonic() - started, "unacknowledged": unacked})
        if unacked == 0 and left["unpublished"] == 0 or time.monotonic() - started > 30:
            break
        time.sleep(0.05 if on_kafka(stack) else 0.005)   # Kafka's lag costs three admin requests
    wait_caught_up(stack)   # then the proof: every key equal to the projection of Postgres
    catch_up_s = time.monotonic() - started   # from the restart command to a read model equal to Postgres
    after = stats(stack)
    fold = fold_check(stack, ids)
    return {"log": "Kafka topic" if on_kafka(stack) else "Redis Stream", "orders": n, "killed_after": kill_after,
            "events": fold["events"], "backlog_at_restart": at_restart,
            "crashed_consumer_held": held, "republished": republished, "catch_up_s": catch_up_s,
            "applied": after.get("applied", 0) - before.get("applied", 0),
            "reclaimed": after.get("reclaimed", 0) - before.get("reclaimed", 0),
            "skipped": after.get("skipped", 0) - before.get("skipped", 0),
            "totals": totals(dump_read_model(stack)), "ids": ids, "restart_s": ready_s,
            "trace": pd.DataFrame(trace)}


def relay_drill(stack, n: int = 20) -> dict:
    """SIGKILL the relay after a third of ``n`` orders: their events wait in Postgres (the
    outbox). Restart it: every event of the log reaches the stream (each seq at least once)."""
    killed = threading.Event()

    def on_placed(i):
        if i + 1 == max(1, n // 3):
            stack.kill("relay-1", "KILL")
            killed.set()

    ids = place_orders(stack, n, on_placed=on_placed)
    wait_orders(stack, ids)
    waiting = backlog(stack)["unpublished"]
    started = time.monotonic()
    stack.start("relay-1")
    wait_relayed(stack)
    relayed_s = time.monotonic() - started
    wait_caught_up(stack)
    in_stream = set(topic_frame(stack).seq.astype(int)) if on_kafka(stack) else stream_seqs(stack)
    in_log = {int(r["seq"]) for r in db.fetch(stack.database_url(), "SELECT seq FROM order_events")}
    if in_log - in_stream:
        raise CheckFailed(f"{len(in_log - in_stream)} events of the log never reached the stream, e.g. seq "
                          f"{min(in_log - in_stream)}")
    return {"orders": n, "waiting_in_outbox": waiting, "relayed_s": relayed_s, "log": len(in_log),
            "stream_entries": log_entries(backlog(stack)), "missing": len(in_log - in_stream)}


def log_entries(left: dict) -> int:
    """Entries in the log the relay wrote to (duplicates included): the Stream's length, or the topic's messages."""
    return int(left["topic"] if "topic" in left else left["stream"])


def stream_seqs(stack) -> set[int]:
    client = redis_client(stack)
    try:
        # decode_responses: (entry_id, fields) pairs of str (the stubs allow None for both, and for the list)
        return {int(fields["seq"]) for _id, fields in cast(list[tuple[str, dict]], client.xrange(STREAM))}
    finally:
        client.close()


def compare_logs(runs: list[dict]) -> pd.DataFrame:
    """The kill drill and the replay on each log, side by side: one row per log (``runs`` holds
    ``{"drill": kill_drill(...), "replay": replay(...)}`` per log, each measured in this run)."""
    rows = []
    for run in runs:
        drill, again = run["drill"], run["replay"]
        rows.append({"log": drill["log"], "orders": drill["orders"], "events": drill["events"],
                     "backlog at restart": unacknowledged(drill["backlog_at_restart"]),
                     "catch-up (s)": round(drill["catch_up_s"], 2),
                     "duplicates skipped": drill["skipped"],
                     "replayed": again["entries_replayed"], "rebuild (s)": round(again["rebuild_s"], 2),
                     "replay (events/s)": round(again["entries_replayed"] / max(again["rebuild_s"], 1e-6))})
    return pd.DataFrame(rows).set_index("log")


def delete_read_model(stack) -> int:
    """Delete every key of the read model (rm:*); how many keys are left (0)."""
    client = redis_client(stack)
    try:
        keys = list(client.scan_iter(READ_MODEL, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    finally:
        client.close()
    return len(dump_read_model(stack))


def replay(stack) -> dict:
    """Stop the projector, delete the read model, rewind the group to the stream's start,
    start it again: the rebuilt read model must equal the one before (compared as dumps).
    On Kafka: the group's committed offsets reset to each partition's start (eventlog_kafka.replay)."""
    if on_kafka(stack):
        return eventlog_kafka.replay(stack, sys.modules[__name__])
    wait_caught_up(stack)
    before = dump_read_model(stack)
    stack.kill(MEMBER, "TERM")
    emptied = delete_read_model(stack)
    client = redis_client(stack)
    try:
        client.xgroup_setid(STREAM, GROUP, id="0")
        entries = int(client.xlen(STREAM))
    finally:
        client.close()
    started = time.monotonic()
    stack.start(MEMBER)
    wait_caught_up(stack, timeout=60)
    rebuild_s = time.monotonic() - started
    after = dump_read_model(stack)
    if after != before:
        raise CheckFailed("the replayed read model differs from the one before: " + "; ".join(diff(before, after)))
    return {"keys": len(before), "keys_after_delete": emptied, "entries_replayed": entries, "rebuild_s": rebuild_s}


def broker_drill(stack, n: int = 12) -> dict:
    """Lab 08 on Kafka: the broker SIGKILLed and started again, nothing lost (eventlog_kafka.broker_drill)."""
    return eventlog_kafka.broker_drill(stack, sys.modules[__name__], n)


def naive_apply(event: dict, r) -> bool:
    """NOT the exercise: a projector without the sequence check (what goes wrong without one)."""
    pipe = r.pipeline()
    pipe.hset(f"naive:order:{event['order_id']}", mapping={"status": event["status"]})
    pipe.hincrby(f"naive:order:{event['order_id']}", "events", 1)
    if event["type"] == "created":
        pipe.hincrby(f"naive:user:{event['user_id']}", "orders", 1)
    if event["status"] == "done":
        pipe.hincrby(f"naive:user:{event['user_id']}", "spent_cents", event["total_cents"])
    pipe.execute()
    return True


def redelivery_drill(stack, apply_fn, prefix: str, redeliver: int = 20) -> dict:
    """Feed every stream entry to ``apply_fn`` once, then the last ``redeliver`` entries again
    (a consumer that crashed before its XACKs gets them back), into keys under ``prefix:``
    (``naive`` for :func:`naive_apply`), away from the live read model. Its totals against
    the truth from Postgres."""
    from shop.events import from_stream
    client = redis_client(stack)
    try:
        # decode_responses: (entry_id, fields) pairs of str (the stubs allow None for both, and for the list)
        entries = [from_stream(fields) for _id, fields in cast(list[tuple[str, dict]], client.xrange(STREAM))]
        for key in list(client.scan_iter(f"{prefix}:*", count=1000)):
            client.delete(key)
        for event in entries + entries[-redeliver:]:
            apply_fn(event, client)
        users = [client.hgetall(k) for k in client.scan_iter(f"{prefix}:user:*", count=1000)
                 if client.type(k) == "hash"]
        spent = sum(int(u.get("spent_cents", 0)) for u in users)
        orders = sum(int(u.get("orders", 0)) for u in users)
        for key in list(client.scan_iter(f"{prefix}:*", count=1000)):
            client.delete(key)
    finally:
        client.close()
    truth = db.fetch(stack.database_url(), "SELECT count(*) AS orders, coalesce(sum(total_cents) FILTER "
                     "(WHERE status = 'done'), 0) AS spent FROM orders o WHERE EXISTS "
                     "(SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.published_at IS NOT NULL)")[0]
    return {"entries": len(entries), "redelivered": min(redeliver, len(entries)), "orders": orders,
            "orders_true": int(truth["orders"]), "spent_cents": spent, "spent_true": int(truth["spent"])}


# -- the exercise: an idempotent projector ------------------------------------------------
def _check_projector(stack, exercise) -> str:
    apply = exercise.function(stack, "apply")
    client = redis_client(stack)
    base = 9_000_000_000 + uuid.uuid4().int % 1_000_000_000    # ids no real order or user has
    order, user = base, base + 1
    keys = [f"rm:order:{order}", f"rm:user:{user}", f"rm:user:{user}:orders"]
    seq = base

    def event(offset, type_, status, total=4200):
        return {"seq": seq + offset, "order_id": order, "user_id": user, "type": type_, "status": status,
                "total_cents": total, "at": "2026-01-01T00:00:00+00:00"}

    def snapshot():
        return {"order": client.hgetall(keys[0]), "user": client.hgetall(keys[1]),
                "orders": set(client.zrange(keys[2], 0, -1))}

    try:
        client.delete(*keys)
        try:
            first = apply(event(1, "created", "pending"), client)
        except NotImplementedError:
            raise NotAttempted("apply() still raises NotImplementedError") from None
        except Exception as exc:
            raise CheckFailed(f"apply() raised {type(exc).__name__}: {exc}") from None
        s1 = snapshot()
        if s1["order"].get("status") != "pending" or s1["order"].get("seq") != str(seq + 1):
            raise CheckFailed(f"after a 'created' event (seq {seq + 1}, status 'pending') {keys[0]} holds "
                              f"{s1['order']}: set status, user_id, total_cents, seq and events")
        if s1["user"].get("orders") != "1" or s1["orders"] != {str(order)}:
            raise CheckFailed(f"after a 'created' event the user's view is {s1['user']} with orders {s1['orders']}: "
                              "count it in rm:user:<id> 'orders' and add the id to rm:user:<id>:orders")
        if first is not True:
            raise CheckFailed(f"apply() returned {first!r} for a new event: return True when it changed the model")
        again = apply(event(1, "created", "pending"), client)
        if snapshot() != s1:
            raise CheckFailed(f"a redelivered 'created' event changed the read model: {s1} became {snapshot()} — "
                              "skip an event whose seq is not above the order's last applied seq")
        if again is not False:
            raise CheckFailed(f"apply() returned {again!r} for a redelivered event: return False when it skipped it")
        apply(event(2, "status", "processing"), client)
        apply(event(3, "status", "done"), client)
        for offset, type_, status in [(3, "status", "done"), (2, "status", "processing"), (1, "created", "pending")]:
            apply(event(offset, type_, status), client)       # a whole batch redelivered after a crash
        s3 = snapshot()
        want_order = {"status": "done", "user_id": str(user), "total_cents": "4200", "seq": str(seq + 3), "events": "3"}
        if s3["order"] != want_order:
            raise CheckFailed(f"after created → processing → done and a redelivery of all three, {keys[0]} is "
                              f"{s3['order']}, expected {want_order}")
        if s3["user"] != {"orders": "1", "done": "1", "spent_cents": "4200"}:
            raise CheckFailed(f"after one order of 4200 cents went done (and its events were redelivered), "
                              f"rm:user:<id> is {s3['user']}, expected orders=1, done=1, spent_cents=4200")
        # The same new event from 8 clients at once: the check and the change must be one step.
        # Each client connected first, then all 8 released together: a check-then-write meets its race
        # on every run, not only when the threads' start-up happens to line up.
        results, clients = [], [redis_client(stack) for _ in range(8)]
        for c in clients:
            c.ping()
        start = threading.Barrier(len(clients))

        def deliver(c):
            start.wait(timeout=10)
            results.append(apply(event(4, "status", "done", 4200), c))

        threads = [threading.Thread(target=deliver, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
        s4 = snapshot()
        if s4["order"].get("events") != "4" or s4["user"].get("spent_cents") != "8400" or results.count(True) != 1:
            raise CheckFailed(f"one new event applied by 8 clients at the same instant: {results.count(True)} said "
                              f"True and the order counts {s4['order'].get('events')} events — the check and the "
                              "writes must run as one atomic step (one Lua script, or WATCH + MULTI/EXEC)")
    finally:
        client.delete(*keys)
        client.close()

    # Live: the projector process loads projector.py when it starts.
    stack.restart(MEMBER)
    ids = place_orders(stack, 12, users=2)
    wait_orders(stack, ids)
    took = wait_caught_up(stack)
    model = totals(dump_read_model(stack))
    return (f"a redelivered event (and a redelivered batch) changes nothing; 8 simultaneous copies of one event → "
            f"applied once; live: 12 orders, the read model ({model['orders']} orders, {model['events']} events "
            f"applied) equals Postgres {took:.2f} s after the orders finished")


projector = Exercise(
    name="projector",
    title="Exercise · an idempotent projector apply(event, redis)",
    checker=_check_projector,
    hints=[
        "The stream is at-least-once: the same event can arrive twice (a relay that died before marking it "
        "published, a projector that died before XACK). Each order's hash can remember the last seq it applied.",
        "Skip the event when event['seq'] <= HGET rm:order:<id> seq. But a read, then writes, is two steps: "
        "make it one — a Lua script run with redis.eval(script, numkeys, *keys, *args) is atomic.",
        "In the script: compare seq; HSET the order's status/user_id/total_cents/seq, HINCRBY its events; on "
        "'created' HINCRBY the user's orders and ZADD the id; on status 'done' HINCRBY done and spent_cents. "
        "Return 1 or 0; apply() returns result == 1.",
    ],
    reference="shop.reference.projector",
    handle="lab08.projector",
)


# -- lab 08 on Kafka (labs/eventlog_kafka.py) ---------------------------------------------
def use_kafka(stack) -> bool:
    """A Kafka broker as member kafka-1, the relay and the projector moved onto it (False, said in one
    line, where the runtime has none)."""
    return eventlog_kafka.use_kafka(stack, sys.modules[__name__])


partition_key = Exercise(
    name="partition_key",
    title="Exercise · the Kafka message key of an order event",
    checker=lambda stack, exercise: eventlog_kafka.check_partition_key(stack, exercise, sys.modules[__name__]),
    hints=eventlog_kafka.KEY_HINTS,
    reference="shop.reference.partition_key",
    handle="lab08.partition_key",
)
