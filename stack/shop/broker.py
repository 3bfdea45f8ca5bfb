"""The broker that carries the orders, and how it keeps them: ``broker.yaml``.

Lab 05's ``broker`` exercise is a settings file in the lab workspace; later labs run the
reference (``shop/reference/broker.yaml``: RabbitMQ with publisher confirms). Without a file
(or with an empty one) lab 05 runs its starting broker, the stack's Redis in memory::

    broker: rabbitmq        # redis | rabbitmq
    confirm_publish: true

===================  ========  ==================================================  ============================
setting              broker    what it does                                        when left out
===================  ========  ==================================================  ============================
``appendonly``       redis     every write is also appended to a file (the AOF),   ``no`` (Valkey's default)
                               replayed at start
``appendfsync``      redis     when the AOF is forced to disk: ``no`` (the OS      ``everysec`` (Valkey's)
                               decides), ``everysec``, ``always`` (before the
                               answer)
``durable``          rabbitmq  the queue itself survives a broker restart          ``true`` (Celery's default)
``persistent``       rabbitmq  each message is written to disk (delivery mode 2)   ``true`` (Celery's default)
``confirm_publish``  rabbitmq  the publisher waits for the broker's confirm (sent  ``false`` (Celery's default)
                               once the message is on disk) before the 202
===================  ========  ==================================================  ============================

The services (``shop.tasks``, ``shop.orders_app``) and the driver read the file through
:func:`load` / :func:`parse`, so they agree on the broker; a bad setting is one line naming it.

:class:`BrokerClient` is what the order service asks the broker: is it up (``/ready``), how
many messages wait (the ``orders_queue_depth`` metric), what is in the dead-letter queue.
"""

import asyncio
import json
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import amqp
import yaml
from kombu import Connection, Exchange, Queue
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from shop import orders
from shop.config import Settings

FILE = "broker.yaml"
REFERENCE = Path(__file__).parent / "reference" / FILE
KINDS = ("redis", "rabbitmq")
FSYNC = ("no", "everysec", "always")
# RabbitMQ: the dead-letter exchange the orders queue names, and the queue bound to it.
DEAD_LETTER_EXCHANGE = "orders.dead-letter"
DEAD_LETTER_QUEUE = "orders.dead-letter"
# What a failed publish raises, whichever the broker (a refused connection, a timed-out confirm, a nack).
PUBLISH_ERRORS = (OperationalError, RedisError, OSError, amqp.exceptions.AMQPError)


class BrokerSettingsError(ValueError):
    """broker.yaml holds a setting the stack cannot run: the message names it."""


@dataclass(frozen=True)
class BrokerSettings:
    broker: str
    appendonly: bool = False
    appendfsync: str = "everysec"
    durable: bool = True
    persistent: bool = True
    confirm_publish: bool = False

    def label(self) -> str:
        """Short and exact: ``redis, appendonly yes, appendfsync always``."""
        if self.broker == "redis":
            return "redis, appendonly " + (f"yes, appendfsync {self.appendfsync}" if self.appendonly else "no")
        return ", ".join(["rabbitmq", *(f"{name} {str(getattr(self, name)).lower()}" for name in OWN["rabbitmq"])])


# Which settings belong to which broker (the other broker's settings are an error, not ignored).
OWN = {"redis": ("appendonly", "appendfsync"), "rabbitmq": ("durable", "persistent", "confirm_publish")}
STARTING = BrokerSettings("redis")   # lab 05 before the exercise: Redis keeps the queue in memory only
BOOL_WORDS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


def _bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in BOOL_WORDS:
        return BOOL_WORDS[value.lower()]
    raise BrokerSettingsError(f"{FILE}: {name}: {value!r} is not yes/no (true/false)")


def _fsync(value) -> str:
    if value is False:   # YAML reads a bare `no` as false
        return "no"
    if isinstance(value, str) and value.lower() in FSYNC:
        return value.lower()
    raise BrokerSettingsError(f"{FILE}: appendfsync: {value!r} is not one of {', '.join(FSYNC)}")


def parse(text: str) -> BrokerSettings | None:
    """The settings in ``text``; None when it holds none (an empty file, or only comments)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise BrokerSettingsError(f"{FILE} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BrokerSettingsError(f"{FILE} must be settings, one per line (`broker: rabbitmq`), "
                                  f"not a {type(data).__name__}")
    known = [f.name for f in fields(BrokerSettings)]
    for name in data:
        if name not in known:
            raise BrokerSettingsError(f"{FILE}: unknown setting {name!r} — the settings are {', '.join(known)}")
    kind = data.get("broker")
    if kind not in KINDS:
        got = "missing" if kind is None else f"{kind!r}"
        raise BrokerSettingsError(f"{FILE}: broker: {got} — write `broker: redis` or `broker: rabbitmq`")
    for name in data:
        other = next((k for k, names in OWN.items() if name in names and k != kind), None)
        if other:
            raise BrokerSettingsError(f"{FILE}: {name} is a setting of broker: {other}, not of broker: {kind} "
                                      "— remove it (it would do nothing)")
    values: dict[str, Any] = {name: (_fsync(value) if name == "appendfsync" else _bool(name, value))
                              for name, value in data.items() if name != "broker"}
    return BrokerSettings(kind, **values)


def read(path: Path) -> BrokerSettings | None:
    """The settings in the file at ``path``; None when it is missing or holds none."""
    return parse(path.read_text()) if path.exists() else None


def chosen(workspace: Path | None, exercises) -> BrokerSettings:
    """The broker of a lab: the workspace's broker.yaml where the lab's exercises include ``broker``
    (lab 05: no file yet = the starting broker), else the reference file (labs 07, 08)."""
    if "broker" not in exercises:
        reference = read(REFERENCE)
        assert reference is not None   # the repository's reference broker.yaml holds settings
        return reference
    return read(Path(workspace or ".") / FILE) or STARTING


def load(settings: Settings) -> BrokerSettings:
    """The broker this process uses (the same call as the driver's: they agree)."""
    return chosen(settings.workspace, settings.exercises)


# -- Celery on the chosen broker ---------------------------------------------------------------
def orders_queue(broker: BrokerSettings) -> Queue:
    """RabbitMQ's orders queue: durable or not, dead-lettering to the dead-letter exchange."""
    return Queue(orders.QUEUE, Exchange(orders.QUEUE, type="direct", durable=True), routing_key=orders.QUEUE,
                 durable=broker.durable, queue_arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                                                          "x-dead-letter-routing-key": DEAD_LETTER_QUEUE})


def dead_letter_queue() -> Queue:
    """Where RabbitMQ puts the messages a worker rejected (always durable: people read it later)."""
    return Queue(DEAD_LETTER_QUEUE, Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True),
                 routing_key=DEAD_LETTER_QUEUE, durable=True)


def url(settings: Settings, broker: BrokerSettings) -> str:
    """The broker's URL (a local default when unset: creating a Celery app connects to nothing)."""
    if broker.broker == "rabbitmq":
        return settings.rabbitmq_url or "amqp://guest:guest@127.0.0.1:5672//"
    return settings.redis_url or "redis://127.0.0.1:6379/0"


def celery_config(settings: Settings, broker: BrokerSettings) -> dict:
    """The Celery settings that depend on the broker (shop.tasks.make_celery sets the rest)."""
    if broker.broker == "redis":
        return {"broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout_s,
            # look for messages past their visibility timeout every second (default: ~100 s)
            "unacked_restore_interval": 1, "unacked_restore_throttle": 1}}
    return {"task_queues": [orders_queue(broker)],
            "task_default_delivery_mode": "persistent" if broker.persistent else "transient",
            "broker_transport_options": {"confirm_publish": broker.confirm_publish}}


def publish(app, order_id: int, confirm_timeout_s: float) -> None:
    """Queue the order's task. With confirm_publish on, this returns once RabbitMQ has the message
    on disk (its confirm), and raises when it refused it or did not answer in time."""
    app.send_task(orders.TASK, args=[order_id], queue=orders.QUEUE, confirm_timeout=confirm_timeout_s)


def declare(app, broker: BrokerSettings) -> None:
    """RabbitMQ: the orders queue and the dead-letter exchange and queue exist (idempotent)."""
    if broker.broker != "rabbitmq":
        return
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in (orders_queue(broker), dead_letter_queue()):
            queue(channel).declare()


# -- what the order service asks the broker ----------------------------------------------------
class BrokerUnavailable(Exception):
    """The broker did not answer."""


class BrokerClient:
    """``ping``, ``depth`` and ``dead_letters`` on the broker the order service publishes to."""

    def __init__(self, settings: Settings, broker: BrokerSettings):
        self.settings, self.broker = settings, broker
        self.timeout_s = settings.redis_timeout_s * 4
        self._redis = None
        self._amqp: Connection | None = None   # kept for depth() (read every scrape)
        self._lock = threading.Lock()
        if broker.broker == "redis":
            import redis.asyncio as aioredis
            self._redis = aioredis.from_url(url(settings, broker), socket_timeout=self.timeout_s,
                                            socket_connect_timeout=self.timeout_s)

    def _connection(self) -> Connection:
        return Connection(url(self.settings, self.broker), connect_timeout=self.timeout_s)

    async def _call(self, fn):
        try:
            return await asyncio.to_thread(fn)
        except PUBLISH_ERRORS as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.ping()
            except (RedisError, OSError) as exc:
                raise BrokerUnavailable(type(exc).__name__) from exc
            return

        def login():   # a real AMQP login, every time: a half-dead node does not pass
            with self._connection() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.timeout_s)
        await self._call(login)

    async def depth(self) -> int:
        """Messages waiting in the orders queue (not the ones a worker holds)."""
        if self._redis is not None:
            return int(await asyncio.wait_for(self._redis.llen(orders.QUEUE), self.timeout_s))

        def count():
            with self._lock:
                try:
                    if self._amqp is None:
                        self._amqp = self._connection()
                    return self._amqp.default_channel.queue_declare(orders.QUEUE, passive=True).message_count
                except Exception:
                    self._close_amqp()   # a restarted broker or a queue not there yet: reconnect next time
                    raise
        return await self._call(count)

    async def dead_letters(self, limit: int) -> list[dict]:
        """The dead orders, oldest first: {order_id, task_id, retries, at, ...}."""
        if self._redis is not None:
            try:
                entries = await self._redis.lrange(orders.DEAD_LETTER, 0, limit - 1)
            except (RedisError, OSError) as exc:
                raise BrokerUnavailable(type(exc).__name__) from exc
            return [json.loads(e) for e in entries]
        return await self._call(lambda: peek_dead_letters(self._connection(), limit))

    def _close_amqp(self) -> None:
        if self._amqp is not None:
            try:
                self._amqp.release()
            except Exception:
                pass
            self._amqp = None

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        with self._lock:
            self._close_amqp()


def peek_dead_letters(conn: Connection, limit: int) -> list[dict]:
    """Read up to ``limit`` messages of RabbitMQ's dead-letter queue without taking them: each is
    fetched unacknowledged, and closing the channel puts every one back where it was."""
    items = []
    with conn:
        channel = conn.channel()
        queue = dead_letter_queue()(channel)
        queue.declare()
        try:
            for _ in range(limit):
                message = queue.get(no_ack=False, accept=["json"])
                if message is None:
                    break
                items.append(_dead_letter_entry(message))
        finally:
            channel.close()   # nothing acknowledged: every message is requeued
    return items


def _dead_letter_entry(message) -> dict:
    headers = message.headers or {}
    args = message.decode()[0] if message.body else []
    death = (headers.get("x-death") or [{}])[0]
    at = death.get("time")
    return {"order_id": args[0] if args else None, "task_id": headers.get("id"), "retries": headers.get("retries"),
            "reason": death.get("reason"), "at": at.timestamp() if hasattr(at, "timestamp") else at}
