"""The projector service: relay the event log to a Redis Stream, project it into a read model.

    python -m shop.projector relay     # the relay alone (the lab runs it as member relay-1)
    python -m shop.projector consume   # the consumer alone (member projector-1)
    python -m shop.projector           # both, in one process
    (settings from SHOP_* variables; the member's name in SHOP_INSTANCE)

Two loops:

* the relay: every ``RELAY_POLL_S``, :func:`shop.events.relay_once` moves
  unpublished ``order_events`` rows to the stream ``orders.events``;
* the consumer (the main thread): a member of the consumer group ``projector``. At start
  it claims every entry still pending in the group (``XAUTOCLAIM``, min idle 0: entries a
  killed incarnation read and never acknowledged) and applies those first, then reads new
  entries (``XREADGROUP ... >``). Each entry goes to the projector exercise's
  ``apply(event, redis)`` and is acknowledged (``XACK``) only after it returned: a crash
  between the two redelivers the entry, so ``apply`` must be idempotent.

One consumer per group keeps each order's events in order (several consumers would need
the stream partitioned by order id, as Kafka partitions a topic). Counters in the hash
``projector:stats`` (applied, skipped, reclaimed, relayed, errors) say what happened.

With ``SHOP_KAFKA_BOOTSTRAP`` set, both loops use Kafka instead (``shop/kafka_log.py``): the
relay produces to the topic ``orders.events``, keyed by the ``partition_key`` exercise, and the
consumer is a member of the Kafka consumer group ``projector`` that commits a batch's offsets
after applying it. The read model, ``apply`` and the counters stay as they are.
"""

import asyncio
import logging
import os
import secrets
import signal
import sys
import threading
from typing import Any, cast

import asyncpg
import redis
import redis.asyncio as aioredis

from shop import events, readiness
from shop.config import Settings
from shop.errors import ExerciseNotDone
from shop.exercises import Exercises

log = logging.getLogger("shop.projector")
MEMBERS = "projector:members"   # hash: member -> pid, set when the consumer group is ready
STATS = "projector:stats"
RELAY_POLL_S = 0.05
BATCH = 100


class Projector:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.member = settings.instance
        # A new consumer per incarnation. The pid alone would not do in a container: every
        # incarnation runs its command as the same small pid of its own namespace.
        self.consumer = f"{self.member}-{os.getpid()}-{secrets.token_hex(2)}"
        assert settings.redis_url is not None   # main() refuses to start without it
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=5)
        self.exercises = Exercises(settings)
        self.stopping = threading.Event()

    # -- the relay ---------------------------------------------------------------
    def relay_forever(self) -> None:
        asyncio.run(self._relay())

    async def _relay(self) -> None:
        assert self.settings.redis_url is not None   # main() refuses to start without it
        client = aioredis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
        bootstrap = self.settings.kafka_bootstrap
        publish = self._to_kafka(bootstrap) if bootstrap else self._to_stream(client)
        conn, failures = None, 0
        while not self.stopping.is_set():
            readiness.beat()
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.settings.database_url, timeout=5)
                moved = await publish(conn)
                failures = 0
                if moved:
                    await client.hincrby(STATS, "relayed", moved)
                    continue   # more may wait: no sleep
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, redis.RedisError) as exc:
                log.warning("relay: %s: %s (retrying)", type(exc).__name__, exc)
                conn = None
                await asyncio.sleep(1)
            except Exception as exc:   # Kafka refused or timed out, or the learner's key(): say so, retry
                if failures % 30 == 0:
                    log.error("relay: %s: %s — nothing of the batch marked published; retrying every second",
                              type(exc).__name__, exc)
                failures += 1
                await client.hincrby(STATS, "relay_errors", 1)
                await asyncio.sleep(1)
            await asyncio.sleep(RELAY_POLL_S)

    @staticmethod
    def _to_stream(client):
        async def publish(conn) -> int:
            return await events.relay_once(conn, client)
        return publish

    def _to_kafka(self, bootstrap: str):
        from shop import kafka_log
        produce = kafka_log.producer(bootstrap)
        topic_ready = False

        def key(event: dict):
            try:
                return self.exercises.module("partition_key").key(event)
            except NotImplementedError:
                raise ExerciseNotDone("partition_key.key() still raises NotImplementedError: write it, run its "
                                      "cell, then lab08.use_kafka(stack) again") from None

        async def publish(conn) -> int:
            nonlocal topic_ready
            if not topic_ready:
                kafka_log.ensure_topic(bootstrap)
                topic_ready = True
            return await kafka_log.relay_once(conn, produce, key)
        return publish

    # -- the consumer ------------------------------------------------------------
    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(events.STREAM, events.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def apply(self, entry_id: str, fields: dict) -> None:
        """Apply one entry until it succeeds, then acknowledge it (never ack an unapplied event)."""
        try:
            event = events.from_stream(fields)
        except ValueError as exc:   # not an order event: retrying cannot help; count it and move on
            log.error("entry %s skipped: %s", entry_id, exc)
            self.redis.xack(events.STREAM, events.GROUP, entry_id)
            self.redis.hincrby(STATS, "malformed", 1)
            return
        applied = self.apply_event(event)
        if applied is None:
            return   # stopping: not acknowledged, redelivered to the next incarnation
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(events.STREAM, events.GROUP, entry_id)
        pipe.hincrby(STATS, "applied" if applied else "skipped", 1)
        pipe.execute()

    def apply_event(self, event: dict) -> bool | None:
        """The learner's apply(event, redis), retried every second until it returns (None: stopping)."""
        tries = 0
        while not self.stopping.is_set():
            try:
                applied = self.exercises.module("projector").apply(event, self.redis)
            except redis.RedisError:
                raise
            except Exception as exc:   # learner code (or its stub): say so, keep the entry, try again
                self.redis.hincrby(STATS, "errors", 1)
                if tries % 30 == 0:    # once, then every 30 s: a stub waiting for its learner is not news
                    log.error("apply(event seq %s) failed: %s: %s — retrying every second (a restart "
                              "loads projector.py again)", event["seq"], type(exc).__name__, exc)
                tries += 1
                self.stopping.wait(1)
                continue
            return bool(applied)
        return None

    def reclaim(self) -> int:
        """Apply every entry pending in the group (read by a dead consumer, never acked)."""
        claimed, cursor = 0, "0-0"
        while not self.stopping.is_set():
            cursor, entries, *_ = self.redis.xautoclaim(events.STREAM, events.GROUP, self.consumer,
                                                        min_idle_time=0, start_id=cursor, count=BATCH)
            for entry_id, fields in entries:
                if fields:   # an entry trimmed from the stream comes back empty
                    self.apply(entry_id, fields)
                    claimed += 1
            if cursor == "0-0":
                break
        if claimed:
            self.redis.hincrby(STATS, "reclaimed", claimed)
        # Dead incarnations hold nothing now: forget them, so XINFO CONSUMERS lists the living.
        for consumer in self.redis.xinfo_consumers(events.STREAM, events.GROUP):
            if consumer["name"] != self.consumer and consumer["pending"] == 0:
                self.redis.xgroup_delconsumer(events.STREAM, events.GROUP, consumer["name"])
        return claimed

    def consume_forever(self) -> None:
        self.ensure_group()
        self.redis.hset(MEMBERS, self.member, os.getpid())
        readiness.mark(True)
        claimed = self.reclaim()
        log.info("%s: consumer %s ready; %d pending entries reclaimed", self.member, self.consumer, claimed)
        while not self.stopping.is_set():
            readiness.beat()
            # RESP2 (redis-py's default): [[stream, [(entry_id, fields), ...]]]; the stubs also allow RESP3's dict
            batches = cast(list[list[Any]], self.redis.xreadgroup(events.GROUP, self.consumer, {events.STREAM: ">"},
                                                                  count=BATCH, block=200))
            for _stream, entries in batches or []:
                for entry_id, fields in entries:
                    self.apply(entry_id, fields)

    def consume_kafka_forever(self, bootstrap: str) -> None:
        """A member of the Kafka group: poll a batch, apply each event, then commit the batch's offsets."""
        from shop import kafka_log
        while not self.stopping.is_set():   # the relay may not have made the topic yet: make sure it is there
            try:
                kafka_log.ensure_topic(bootstrap)
                break
            except Exception as exc:   # the broker restarting: KafkaException, a timeout
                log.warning("kafka topic %s not ready: %s (retrying)", kafka_log.TOPIC, exc)
                self.stopping.wait(1)
        kafka = kafka_log.consumer(bootstrap, self.member)
        kafka.subscribe([kafka_log.TOPIC])
        self.redis.hset(MEMBERS, self.member, os.getpid())
        readiness.mark(True)
        log.info("%s: member of Kafka group %s on %s", self.member, kafka_log.GROUP, bootstrap)
        try:
            while not self.stopping.is_set():
                readiness.beat()
                batch = kafka.consume(num_messages=BATCH, timeout=0.2)
                done = []
                for msg in batch:
                    if msg.error():
                        log.warning("kafka: %s", msg.error())
                        continue
                    try:
                        event = kafka_log.decode(msg.value())
                    except ValueError as exc:   # not an order event: count it and move past it
                        log.error("message %s/%s skipped: %s", msg.partition(), msg.offset(), exc)
                        self.redis.hincrby(STATS, "malformed", 1)
                        done.append(msg)
                        continue
                    applied = self.apply_event(event)
                    if applied is None:
                        break   # stopping: the rest of the batch is redelivered
                    self.redis.hincrby(STATS, "applied" if applied else "skipped", 1)
                    done.append(msg)
                try:
                    kafka_log.commit(kafka, done)
                except Exception as exc:   # a rebalance or a restarting broker: those events come again
                    log.warning("kafka commit of %d offsets failed: %s", len(done), exc)
        finally:
            kafka.close()

    def stop(self, *_) -> None:
        self.stopping.set()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if not settings.redis_url:
        print("projector: SHOP_REDIS_URL is not set: the stream and the read model live in Redis", file=sys.stderr)
        return 2
    role = sys.argv[1] if len(sys.argv) > 1 else "both"
    if role not in ("relay", "consume", "both"):
        print(f"projector: unknown role {role!r}: use relay, consume or both", file=sys.stderr)
        return 2
    projector = Projector(settings)
    signal.signal(signal.SIGTERM, projector.stop)
    signal.signal(signal.SIGINT, projector.stop)
    try:
        if role == "relay":
            projector.redis.hset(MEMBERS, projector.member, os.getpid())
            readiness.mark(True)
            projector.relay_forever()
            return 0
        if role == "both":
            threading.Thread(target=projector.relay_forever, name="relay", daemon=True).start()
        if settings.kafka_bootstrap:
            projector.consume_kafka_forever(settings.kafka_bootstrap)
        else:
            projector.consume_forever()
    finally:
        readiness.mark(False)
        try:
            projector.redis.hdel(MEMBERS, projector.member)
        except redis.RedisError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
