"""Order events on Kafka: the relay's producer side and the projector's consumer side.

Lab 08 runs its event log on a Redis Stream first (``shop.events``); once the stack has a Kafka
broker (``SHOP_KAFKA_BOOTSTRAP``), the relay and the projector use the topic ``orders.events``
instead (``shop.projector``). The same rows, the same fields, the same ``apply(event, redis)``:

* :func:`relay_once` reads unpublished ``order_events`` rows (``FOR UPDATE SKIP LOCKED``), produces
  each keyed by the learner's ``partition_key.key(event)``, waits until the broker acknowledged every
  one (``acks=all``, an idempotent producer), and only then marks them published and commits. A crash
  in between publishes them again: at-least-once, as on the Stream.
* :class:`Consumer` is one member of the consumer group ``projector``: it polls a batch, hands
  each event to ``apply`` and commits the batch's offsets only after every event of it was
  applied. A crash after applying and before the commit redelivers those events from the last
  committed offset: the projector's idempotence guard (the seq check) skips them.

Kafka orders messages within a partition only: one order's events stay in order when they share
a key (the ``partition_key`` exercise), whichever member of the group reads their partition.
Static membership (``group.instance.id`` = the member's name) lets a restarted incarnation take its
partitions back at once, without a rebalance waiting for the dead one's session to expire.
"""

import json
from collections.abc import Callable

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from shop import events

TOPIC = "orders.events"
GROUP = "projector"
PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000       # the broker's minimum: a member gone for good is noticed in 6 s
FLUSH_TIMEOUT_S = 10
# How a client reaches a broker that went away. librdkafka waits up to 10 s between attempts, and
# gives a connection that gets no answer 30 s: on Kubernetes a SYN sent to the killed pod's address
# (the Service's endpoints not yet updated) is dropped, not refused, and the relay sat out those
# 30 s with its batch unpublished (measured on kind: read model equal 31 s after the broker's
# start, 7.6 s of it the broker's own). A lab's broker restarts in seconds: try every second,
# give up on a silent connection after 3.
RECONNECT = {"reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1000,
             "socket.connection.setup.timeout.ms": 3000}


class PublishFailed(RuntimeError):
    """The broker did not acknowledge every message of a batch: nothing of it is marked published."""


def ensure_topic(bootstrap: str, partitions: int = PARTITIONS, timeout: float = 10) -> bool:
    """Create the topic with ``partitions`` partitions unless it exists; True when this call created it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if TOPIC in admin.list_topics(timeout=timeout).topics:
        return False
    future = admin.create_topics([NewTopic(TOPIC, num_partitions=partitions, replication_factor=1)])[TOPIC]
    try:
        future.result(timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
        return False
    return True


def producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "linger.ms": 5, "client.id": "relay", **RECONNECT})


def encode_key(value) -> bytes | None:
    """The learner's key as bytes (a str is UTF-8, an int its decimal digits); None: no key."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value).encode()
    raise TypeError(f"key() returned {type(value).__name__} {value!r}: return a str (or bytes, or None)")


async def relay_once(conn, produce: Producer, key: Callable[[dict], object], batch: int = 500) -> int:
    """Publish up to ``batch`` unpublished events to the topic, oldest first; how many.

    ``conn`` is an asyncpg connection. ``key(event)`` is the partition_key exercise's function: it
    gets the event as ``apply`` does (shop.events.from_stream) and its result keys the message.
    """
    async with conn.transaction():
        rows = await events.unpublished(conn, batch)
        if not rows:
            return 0
        failures: list[str] = []

        def delivered(err, _msg):
            if err is not None:
                failures.append(str(err))

        messages = []   # every key first: a key() that raises stops the batch before anything is sent
        for row in rows:
            fields = events.to_stream(row)
            messages.append((encode_key(key(events.from_stream(fields))), json.dumps(fields).encode()))
        for message_key, value in messages:
            produce.produce(TOPIC, key=message_key, value=value, on_delivery=delivered)
            produce.poll(0)
        left = produce.flush(FLUSH_TIMEOUT_S)
        if left or failures:
            raise PublishFailed(f"{left} of {len(rows)} messages unacknowledged after {FLUSH_TIMEOUT_S} s"
                                if left else f"the broker refused a message: {failures[0]}")
        # If we die here, the commit never happens: the rows stay unpublished and go out again.
        await events.mark_published(conn, rows)
    return len(rows)


def decode(value: bytes | None) -> dict:
    """A message's value as the event dict ``apply(event, redis)`` gets."""
    if value is None:
        raise ValueError("message without a value (a tombstone)")
    try:
        fields = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"message is not JSON: {value[:80]!r}") from exc
    if not isinstance(fields, dict):
        raise ValueError(f"message is not a JSON object: {value[:80]!r}")
    return events.from_stream(fields)


def consumer(bootstrap: str, member: str, group: str = GROUP) -> KafkaConsumer:
    """A member of ``group``, reading from the start of the topic when the group has no offset yet,
    committing only by hand (after apply)."""
    return KafkaConsumer({
        "bootstrap.servers": bootstrap, "group.id": group, "group.instance.id": member,
        "client.id": member, "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 1000, **RECONNECT,
    })


def commit(kafka: KafkaConsumer, messages) -> None:
    """Commit, synchronously, the offset after the last message of each partition in ``messages``."""
    last: dict[int, int] = {}
    for msg in messages:
        last[msg.partition()] = max(last.get(msg.partition(), -1), msg.offset())
    if last:
        kafka.commit(offsets=[TopicPartition(TOPIC, p, o + 1) for p, o in last.items()], asynchronous=False)
