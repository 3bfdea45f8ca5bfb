"""The Celery app and the order task: what a worker process runs.

    celery -A shop.tasks worker --pool solo --concurrency 1 -Q orders --hostname worker-1@scalelab

Every knob comes from ``shop.config.Settings`` (``SHOP_*`` environment variables). The
delivery guarantees this lab relies on:

* ``task_acks_late``: a worker acknowledges a message *after* the task ran, not when it
  takes it — a worker that dies mid-task leaves the message unacknowledged;
* ``task_reject_on_worker_lost``: with the prefork pool, a task whose child process died
  is requeued at once instead of being marked failed (this lab runs the solo pool: the
  task runs in the worker process itself, so a KILL takes the whole worker and the next
  point applies);
* on Redis, the broker's ``visibility_timeout``: Redis has no acks of its own; Celery keeps a
  taken message in an "unacked" set, and any live worker hands it out again once it has
  been there longer than the timeout. Short here (lab 05's plan), so a killed worker's
  order is redelivered within seconds; it must exceed the longest task and countdown,
  or a task still running is delivered twice (the idempotency guard then still holds).
  RabbitMQ has acks of its own: a message whose consumer's connection closed is requeued at once;
* ``worker_prefetch_multiplier=1``: a worker reserves one message at a time, so a slow
  worker does not sit on a queue of messages others could run.

Which broker, and how it keeps the messages (durable queue, persistent messages, publisher
confirms on RabbitMQ; the append-only file on Redis), is broker.yaml's (``shop/broker.py``).
An order whose retries are spent is dead-lettered: on RabbitMQ the worker rejects its message
and the broker routes it to the dead-letter exchange; on Redis the worker appends an entry to
the list ``orders:dead-letter``.
"""

import asyncio
import functools
import json
import logging
import os
import time

import redis
from celery import Celery, bootsteps, signals
from celery.exceptions import Reject

from shop import metrics, orders, readiness
from shop.broker import BrokerSettings, celery_config, dead_letter_queue, declare
from shop.broker import load as load_broker
from shop.broker import url as broker_url
from shop.config import Settings
from shop.db import DB_UNAVAILABLE
from shop.exercises import Exercises

log = logging.getLogger(__name__)
TASK = orders.TASK


def make_celery(settings: Settings | None = None, broker: BrokerSettings | None = None) -> Celery:
    settings = settings or Settings()
    broker = broker or load_broker(settings)
    app = Celery("shop", broker=broker_url(settings, broker), set_as_current=False)
    app.conf.update(
        task_default_queue=orders.QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,                      # the order's status lives in Postgres
        task_serializer="json", accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # Publishing (POST /orders): a broker that is down costs a request < 1 s, then a 503.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2,
                                   "interval_max": 0.3},
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        **celery_config(settings, broker),
    )
    app.broker_settings = broker
    return app


class _PromptAcks(bootsteps.StartStopStep):
    """Celery queues each late acknowledgement on the worker's event loop (kombu's hub), and the
    hub runs what its own thread queued only after its next poll returns: up to 10 s when no
    socket has anything to say. With prefetch 1 the broker sends the next message only after
    that ack, so a worker idled ~10 s between orders on RabbitMQ (measured). A tick every 50 ms
    ends each poll early: the ack goes out within 50 ms."""
    requires = {"celery.worker.components:Hub"}

    def start(self, worker):
        if worker.hub is not None:
            worker.hub.call_repeatedly(0.05, _tick)


def _tick() -> None:
    """Nothing: the hub runs its queued callbacks (the acks) on the way back to polling."""


# `celery -A shop.tasks` finds the app here; nothing connects until a worker or a client
# sends or consumes (creating a Celery object opens no connection).
app = make_celery()
app.steps["worker"].add(_PromptAcks)
_exercises: Exercises | None = None


@functools.cache
def _settings() -> Settings:
    return Settings()   # read from the environment once per worker process


def exercises() -> Exercises:
    """Learner code, loaded once per worker process (a restarted worker loads it again)."""
    global _exercises
    if _exercises is None:
        _exercises = Exercises(_settings())
    return _exercises


def _dead_letter(settings: Settings, order_id: int, error: str | None, task_id: str | None) -> None:
    """Redis: append the dead order to the list orders:dead-letter. RabbitMQ: reject the message
    (not requeued): the broker routes it to the dead-letter exchange."""
    if app.broker_settings.broker == "rabbitmq":
        with app.producer_or_acquire() as producer:
            producer.maybe_declare(dead_letter_queue())   # it must exist before the broker routes to it
        raise Reject(f"order {order_id}: retries spent ({error})", requeue=False)
    assert settings.redis_url is not None   # a worker always has the stack's Redis (the driver's readiness probe)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    try:
        client.rpush(orders.DEAD_LETTER, json.dumps({"order_id": order_id, "error": error, "task_id": task_id,
                                                     "retries": settings.order_max_retries, "at": time.time()}))
    finally:
        client.close()


@app.task(name=TASK, bind=True)
def process_order(self, order_id: int) -> str:
    settings = _settings()
    retries = self.request.retries
    try:
        outcome, error = asyncio.run(orders.deliver(settings, exercises(), int(order_id),
                                                    worker=self.request.hostname or "?",
                                                    task_id=self.request.id, retries=retries))
    except DB_UNAVAILABLE as exc:   # could not even record the attempt: try again later
        outcome, error = ("retrying" if retries < settings.order_max_retries else "dead"), repr(exc)
    log.info("order %s: %s (delivery with %d retries before)%s", order_id, outcome, retries,
             f": {error}" if error else "")
    if outcome == "retrying":
        raise self.retry(countdown=orders.backoff_s(settings, retries), max_retries=settings.order_max_retries)
    if outcome == "dead":
        _dead_letter(settings, order_id, error, self.request.id)
    return outcome


# Lab 07: task metrics on the worker's own port, and the request id carried in task headers.
metrics.connect_worker_signals(_settings)


# -- readiness: the driver waits until this worker's entry names its current pid -----
# The announcement goes to the stack's Redis whichever the broker is (it is the driver's probe).
@signals.worker_ready.connect
def _announce_ready(sender=None, **_):
    settings = _settings()
    declare(app, app.broker_settings)   # RabbitMQ: the dead-letter queue exists before any order dies
    assert settings.redis_url is not None   # a worker always has the stack's Redis (the driver's readiness probe)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    try:
        client.hset(orders.WORKERS, sender.hostname, os.getpid())
    finally:
        client.close()
    readiness.mark(True)


@signals.worker_shutdown.connect
def _announce_gone(sender=None, **_):
    readiness.mark(False)
    settings = _settings()
    assert settings.redis_url is not None   # a worker always has the stack's Redis (the driver's readiness probe)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    try:
        client.hdel(orders.WORKERS, getattr(sender, "hostname", "?"))
    except redis.RedisError:
        pass   # Redis already gone (the stack is going down): nothing to announce to
    finally:
        client.close()
