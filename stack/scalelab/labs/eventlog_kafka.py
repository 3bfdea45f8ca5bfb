"""Lab 08 on Kafka: the event log moved from the Redis Stream to a real Kafka topic.

    use_kafka(stack)          a broker as member kafka-1; the relay and the projector restarted onto it
    backlog(stack)            unpublished rows, messages in the topic, the group's lag (from the broker)
    topic_frame(stack)        every message of the topic: partition, offset, key, seq, order
    replay(stack)             the group's offsets reset to the start of every partition, the model rebuilt
    check_partition_key       the check of lab08.partition_key: the key that keeps one order's events in order

The read model, ``apply(event, redis)`` and the kill drill are lab08's; only the transport changes.
Functions that need lab08's helpers take the module as an argument (lab08 imports this one).
Names match ``shop.kafka_log`` (the driver does not import the shop's Kafka code).
"""

import time
import uuid
from collections import defaultdict

import pandas as pd

from scalelab.errors import RuntimeUnavailable, ScalelabError
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.waiting import wait_until

TOPIC = "orders.events"       # shop.kafka_log.TOPIC
GROUP = "projector"           # shop.kafka_log.GROUP
PARTITIONS = 6                # shop.kafka_log.PARTITIONS
MEMBER = "projector-1"


def on_kafka(stack) -> bool:
    """Whether the stack's event log is on Kafka now (a broker is a member)."""
    return stack.supports("kafka") and bool(stack.members("kafka"))


def use_kafka(stack, lab08) -> bool:
    """Start a Kafka broker (``kafka-1``) and move the relay and the projector onto it; False, with
    one line saying why, where this runtime has no broker (the rest of the lab stays on the Stream)."""
    if not stack.supports("kafka"):
        print(f"the {stack.runtime_name} runtime runs no Kafka broker: steps 10–12 are not run here, and the "
              "event log stays on the Redis Stream — run the notebook with RUNTIME=\"local\" for them")
        return False
    from scalelab import db
    started = time.monotonic()
    try:
        stack.scale("kafka", 1)
    except RuntimeUnavailable as exc:   # no Java or no jars here: said in one line, the lab goes on
        print(f"{exc} — steps 10–12 are not run, and the event log stays on the Redis Stream")
        return False
    broker_s = time.monotonic() - started
    # The outbox table is the log of record: the new topic gets all of it, not only what happens from
    # now on, or a replay from Kafka could never rebuild the orders placed before the move. The relay
    # stops first: the old one would hand the history to the Stream again, in the instant before its restart.
    stack.kill("relay-1", "TERM")
    history = len(db.fetch(stack.database_url(), "UPDATE order_events SET published_at = NULL RETURNING seq"))
    stack.reconnect_event_log()   # the relay and the projector, restarted with the broker's address
    wait_until(lambda: TOPIC in admin(stack).list_topics(timeout=5).topics, 30, interval=0.2, error=CheckFailed,
               on_timeout=f"the relay made no topic {TOPIC} in 30 s: stack.logs('relay-1')")
    try:
        lab08.wait_relayed(stack)
    except CheckFailed:
        said = [line.split("relay: ", 1)[-1].replace("ExerciseNotDone: ", "")
                for line in stack.logs("relay-1", tail=20).splitlines() if "ERROR" in line][-1:]
        raise CheckFailed("the relay published nothing to Kafka in 20 s" + (f": {said[0]}" if said
                          else " — stack.logs('relay-1')")) from None
    # The projector has read the history when the group's committed offsets reach the topic's end (a
    # new group's first join on a new broker takes seconds); the model already held it: all skipped.
    joined = time.monotonic()
    wait_until(lambda: backlog(stack)["lag"] == 0, 60, interval=0.2, error=CheckFailed,
               on_timeout="the projector did not read the topic to its end in 60 s: stack.logs('projector-1')")
    joined_s = time.monotonic() - joined
    lab08.wait_caught_up(stack)
    print(f"Kafka broker kafka-1 ready on {stack.kafka_bootstrap()} ({broker_s:.1f} s after the start command); "
          f"relay-1 and projector-1 restarted onto the topic {TOPIC} ({PARTITIONS} partitions); the relay "
          f"published the whole outbox into it ({history} events); the projector, a new member of the "
          f"group {GROUP}, had read it all {joined_s:.1f} s later")
    return True


# The driver's clients say what went wrong through exceptions; librdkafka's own lines about a broker
# that went away (a drill killed it, the stack went down) would only clutter the notebook.
QUIET = {"log_level": 2}


def admin(stack):
    """An AdminClient; keep it in a variable while waiting on a future it returned."""
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": stack.kafka_bootstrap(), **QUIET})


def _reader(stack, group: str | None = None):
    from confluent_kafka import Consumer
    return Consumer({"bootstrap.servers": stack.kafka_bootstrap(), "group.id": group or f"scalelab-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest", **QUIET})


def partitions(stack, topic: str = TOPIC) -> list[int]:
    meta = admin(stack).list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        raise CheckFailed(f"no topic {topic} on the broker yet: is the relay up? stack.logs('relay-1')")
    return sorted(meta.partitions)


def retrying(call, what: str, timeout: float = 30):
    """``call()`` again while Kafka answers a passing error (a coordinator or a partition leader still
    being elected right after a start); bounded, then one CheckFailed naming ``what``."""
    from confluent_kafka import KafkaException
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise CheckFailed(f"{what}: Kafka still answers {exc.args[0].str()} after {timeout:.0f} s — "
                                  "stack.logs('kafka-1')") from None
            time.sleep(0.3)


def watermarks(stack, topic: str = TOPIC) -> dict[int, tuple[int, int]]:
    """partition -> (low, high) offsets: the messages the partition holds are low .. high-1."""
    from confluent_kafka import TopicPartition
    reader = _reader(stack)
    try:
        return {p: retrying(lambda p=p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10),
                            f"the offsets of {topic} partition {p}") for p in partitions(stack, topic)}
    finally:
        reader.close()


def committed(stack, group: str = GROUP) -> dict[int, int]:
    """partition -> the group's committed offset (the next message it will read); -1: none yet.
    Asked as a client of the group that never joins it (AdminClient's list_consumer_group_offsets
    crashes confluent-kafka 2.16 here)."""
    from confluent_kafka import TopicPartition
    reader = _reader(stack, group)
    try:
        got = retrying(lambda: reader.committed([TopicPartition(TOPIC, p) for p in partitions(stack)], timeout=10),
                       f"group {group}'s committed offsets")
        return {tp.partition: tp.offset if tp.offset >= 0 else -1 for tp in got}
    finally:
        reader.close()


def reset_offsets(stack, offsets: dict[int, int], group: str = GROUP) -> bool:
    """Commit ``offsets`` (partition -> offset) for ``group`` from outside it; False while the group
    still has a member (the coordinator refuses a commit from a non-member then)."""
    from confluent_kafka import KafkaException, TopicPartition
    reader = _reader(stack, group)
    try:
        reader.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in offsets.items()], asynchronous=False)
        return True
    except KafkaException:
        return False
    finally:
        reader.close()


def backlog(stack) -> dict:
    """What the projector has not done yet, from the broker itself: events not relayed (Postgres),
    messages in the topic, and the group's lag (messages past its committed offsets)."""
    from scalelab import db
    unpublished = int(db.fetchval(stack.database_url(), "SELECT count(*) FROM order_events WHERE published_at IS NULL"))
    marks, offsets = watermarks(stack), committed(stack)
    lag = sum(high - (offsets.get(p, -1) if offsets.get(p, -1) >= 0 else low) for p, (low, high) in marks.items())
    return {"unpublished": unpublished, "topic": sum(high - low for low, high in marks.values()), "lag": lag}


def topic_frame(stack, topic: str = TOPIC, timeout: float = 20) -> pd.DataFrame:
    """Every message of ``topic`` (read by a reader outside any group): partition, offset, key, and
    the event's seq, order_id and type."""
    import json

    from confluent_kafka import TopicPartition
    marks = watermarks(stack, topic)
    want = {p: high for p, (low, high) in marks.items() if high > low}
    reader = _reader(stack)
    rows = []
    try:
        reader.assign([TopicPartition(topic, p, marks[p][0]) for p in want])
        deadline = time.monotonic() + timeout
        read: dict[int, int] = defaultdict(int)
        while any(read[p] < want[p] - marks[p][0] for p in want) and time.monotonic() < deadline:
            for msg in reader.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    continue
                event = json.loads(msg.value())
                rows.append({"partition": msg.partition(), "offset": msg.offset(),
                             "key": None if msg.key() is None else msg.key().decode(errors="replace"),
                             "seq": int(event["seq"]), "order_id": int(event["order_id"]), "type": event["type"],
                             "status": event["status"]})
                read[msg.partition()] += 1
    finally:
        reader.close()
    return pd.DataFrame(rows, columns=["partition", "offset", "key", "seq", "order_id", "type", "status"])


def out_of_order(frame: pd.DataFrame) -> list[int]:
    """Orders whose events a consumer reading each partition in order could see out of seq order:
    their events sit in more than one partition."""
    spread = frame.groupby("order_id")["partition"].nunique()
    return sorted(int(order) for order in spread[spread > 1].index)


def replay(stack, lab08) -> dict:
    """Stop the projector, delete the read model, reset the group's offsets to the start of each
    partition, start it again: the rebuilt read model must equal the one before."""
    lab08.wait_caught_up(stack)
    before = lab08.dump_read_model(stack)
    stack.kill(MEMBER, "TERM")
    emptied = lab08.delete_read_model(stack)
    marks = watermarks(stack)
    waited = time.monotonic()
    # Refused while the group still has a member: a static member's session outlives a clean stop
    # (up to 6 s) — Kafka waits that long before it calls the member gone.
    wait_until(lambda: reset_offsets(stack, {p: low for p, (low, _high) in marks.items()}), 30, interval=0.5,
               error=CheckFailed,
               on_timeout="the group's offsets could not be reset in 30 s: is projector-1 still a member?")
    group_empty_s = time.monotonic() - waited
    started = time.monotonic()
    stack.start(MEMBER)
    lab08.wait_caught_up(stack, timeout=60)
    rebuild_s = time.monotonic() - started
    after = lab08.dump_read_model(stack)
    if after != before:
        raise CheckFailed("the replayed read model differs from the one before: "
                          + "; ".join(lab08.diff(before, after)))
    return {"keys": len(before), "keys_after_delete": emptied,
            "entries_replayed": sum(high - low for low, high in marks.values()),
            "rebuild_s": rebuild_s, "group_empty_after_s": group_empty_s}


# -- the exercise: the message key -------------------------------------------------------------
ORDERS, USERS = 60, 20


def sample_events() -> list[dict]:
    """Three events (created, processing, done) for each of 60 orders of 20 users, in seq order."""
    out, seq = [], 0
    for step, (type_, status) in enumerate([("created", "pending"), ("status", "processing"), ("status", "done")]):
        for i in range(ORDERS):
            seq += 1
            out.append({"seq": seq, "order_id": 7_000 + i, "user_id": 500 + i % USERS, "type": type_,
                        "status": status, "total_cents": 100 + i, "at": f"2026-01-01T00:0{step}:00+00:00"})
    return out


def check_partition_key(stack, exercise, lab08) -> str:
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import NewTopic

    from shop.kafka_log import encode_key  # the relay's own rule: str, bytes or int become the key's bytes
    if not on_kafka(stack):
        raise CheckFailed("no Kafka broker in this stack: run lab08.use_kafka(stack) first")
    key = exercise.function(stack, "key")
    sample = sample_events()
    keys = []
    for event in sample:
        try:
            value = key(dict(event))
        except NotImplementedError:
            raise NotAttempted("key() still raises NotImplementedError") from None
        except Exception as exc:
            raise CheckFailed(f"key({event}) raised {type(exc).__name__}: {exc}") from None
        try:
            keys.append(encode_key(value))
        except TypeError:
            raise CheckFailed(f"key() returned {type(value).__name__} {value!r}: return a str "
                              "(the broker stores bytes)") from None
    per_order: dict[int, set] = defaultdict(set)
    for event, message_key in zip(sample, keys, strict=True):
        per_order[event["order_id"]].add(message_key)
    if None in keys:
        raise CheckFailed("key() returned None: a message without a key may go to any partition (the producer "
                          "spreads them), so one order's events could be read out of order")
    mixed = [(order, found) for order, found in per_order.items() if len(found) > 1]
    if mixed:
        order, found = mixed[0]
        raise CheckFailed(f"{len(mixed)} of {ORDERS} orders get more than one key (order {order}: "
                          f"{sorted(k.decode(errors='replace') for k in found)[:3]}): each key may land in its own "
                          "partition, and Kafka keeps order within a partition only")
    topic = f"keycheck.{uuid.uuid4().hex[:8]}"
    client = admin(stack)
    client.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(timeout=15)
    try:
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap(), "acks": "all", "linger.ms": 5, **QUIET})
        import json
        for event, message_key in zip(sample, keys, strict=True):
            producer.produce(topic, key=message_key, value=json.dumps(event).encode())
        if producer.flush(15):
            raise CheckFailed("the broker did not acknowledge the check's messages in 15 s: stack.logs('kafka-1')")
        frame = topic_frame(stack, topic)
    except KafkaException as exc:
        raise CheckFailed(f"Kafka refused the check's messages: {exc}") from None
    finally:
        client.delete_topics([topic])
    if len(frame) != len(sample):
        raise CheckFailed(f"read back {len(frame)} of the {len(sample)} messages produced: stack.logs('kafka-1')")
    split = out_of_order(frame)
    if split:
        where = sorted(frame[frame.order_id == split[0]].partition.unique().tolist())
        raise CheckFailed(f"{len(split)} of {ORDERS} orders have their events in more than one partition (order "
                          f"{split[0]}: partitions {where}): Kafka keeps order within a partition only, so two group "
                          "members could apply an order's 'done' before its 'created'")
    used = frame.partition.nunique()
    if used < PARTITIONS // 2:
        raise CheckFailed(f"{ORDERS} orders' events all landed in {used} of {PARTITIONS} partitions "
                          f"({sorted(frame.partition.unique().tolist())}): in order, but one or two members of the "
                          "group would do all the work — key by something that differs between orders")
    live = two_members(stack, lab08)
    if live["split_orders"]:
        raise CheckFailed(f"live, the relay put order {live['split_orders'][0]}'s events in several partitions: "
                          "restart relay-1 after changing partition_key.py (stack.restart('relay-1'))")
    return (f"{len(sample)} events of {ORDERS} orders on a {PARTITIONS}-partition topic: every order's events in one "
            f"partition, in seq order, {used} of {PARTITIONS} partitions used; live, two projectors "
            f"({', '.join(f'{r.member}: {r.partitions}' for r in live['assignment'].itertuples())}) built a read model "
            f"equal to Postgres {live['caught_up_s']:.2f} s after {live['orders']} orders finished")


KEY_HINTS = [
    "The producer hashes the key to pick a partition: equal keys, one partition. Kafka keeps messages in "
    "order within a partition, never across partitions.",
    "Which events must stay in order relative to each other? Those of one order (its seq check skips an "
    "older event that arrives after a newer one). Events of different orders need no order between them.",
    "Return something every event of one order shares and different orders do not: str(event['order_id']).",
]


def require_kafka(stack) -> None:
    if not on_kafka(stack):
        raise ScalelabError("the event log is not on Kafka in this stack: lab08.use_kafka(stack) moves it there")


def assignment(stack, group: str = GROUP) -> pd.DataFrame:
    """Which member of the group reads which partitions, as the broker's coordinator says."""
    client = admin(stack)   # held until the future resolves
    described = retrying(lambda: client.describe_consumer_groups([group])[group].result(timeout=10),
                         f"group {group}'s members")
    rows = [{"member": m.group_instance_id or m.client_id, "partitions": sorted(tp.partition for tp in
                                                                                 m.assignment.topic_partitions)}
            for m in described.members]
    return pd.DataFrame(rows, columns=["member", "partitions"]).sort_values("member").reset_index(drop=True)


def two_members(stack, lab08, orders: int = 12) -> dict:
    """The group with two projectors: each reads its partitions; orders placed meanwhile end up in a
    read model equal to Postgres only because each order's events share a partition (the key)."""
    require_kafka(stack)
    stack.restart("relay-1")          # loads partition_key.py again
    stack.scale("projector", 2)
    try:
        def both_assigned() -> bool:
            shares = assignment(stack)
            return len(shares) == 2 and all(shares.partitions.map(len))

        wait_until(both_assigned, 30, interval=0.3, error=CheckFailed,
                   on_timeout="the group did not give both projectors partitions in 30 s: stack.logs('projector-2')")
        shares = assignment(stack)
        ids = lab08.place_orders(stack, orders, users=4)
        lab08.wait_orders(stack, ids)
        took = lab08.wait_caught_up(stack)
        frame = topic_frame(stack)
        mine = frame[frame.order_id.isin(ids)]
    finally:
        stack.scale("projector", 1)
    return {"assignment": shares, "orders": len(ids), "events": len(mine), "caught_up_s": took,
            "partitions_used": int(mine.partition.nunique()), "split_orders": out_of_order(mine)}


def broker_drill(stack, lab08, n: int = 12) -> dict:
    """SIGKILL the broker, place ``n`` orders (their events wait in the outbox: the relay cannot
    publish), start it again: every event reaches the topic and the read model equals Postgres."""
    require_kafka(stack)
    before = len(topic_frame(stack))
    stack.kill("kafka-1", "KILL")
    ids = lab08.place_orders(stack, n)
    lab08.wait_orders(stack, ids)
    log = lab08.events_frame(stack, ids)
    waiting = int(log.published_at.isna().sum())
    started = time.monotonic()
    stack.start("kafka-1")
    ready_s = time.monotonic() - started
    lab08.wait_relayed(stack, timeout=60)
    lab08.wait_caught_up(stack, timeout=60)
    caught_up_s = time.monotonic() - started
    frame = topic_frame(stack)
    missing = set(log.seq) - set(frame.seq)
    if missing or len(frame) < before:
        raise CheckFailed(f"after the broker's restart the topic lacks {len(missing)} events of the log "
                          f"(it held {before} messages before, {len(frame)} now)")
    return {"orders": n, "events": len(log), "waiting_in_outbox": waiting, "broker_ready_s": ready_s,
            "caught_up_s": caught_up_s, "topic_before": before, "topic_after": len(frame)}
