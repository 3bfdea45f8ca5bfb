"""A Celery worker (``shop.tasks``) as a local process: ``worker-1``, ``worker-2``, ...

One worker runs one task at a time (``--pool solo``: the task runs in the worker process
itself, so ``stack.kill("worker-1")`` loses the task it holds, as a crashed machine
would). Its Celery hostname is ``<member>@scalelab``. SIGTERM is Celery's warm shutdown:
the worker finishes the task it runs, hands back what it reserved, and exits.
It is ready when it has announced itself (pid included) in the broker's ``orders:workers``
hash — a worker that connected and started consuming, not just a process that exists.
"""

import sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scalelab.process import ProcessRecord
from scalelab.runtimes.local import users as local_users

WORKERS = "orders:workers"   # shop.orders.WORKERS (the driver does not import the shop)


def hostname(member: str) -> str:
    return f"{member}@scalelab"


def record(rt, name: str, port: int) -> ProcessRecord:
    # A worker pulls from the broker; `port` is where it serves its Prometheus metrics (lab 07).
    argv = [sys.executable, "-m", "celery", "-A", "shop.tasks", "worker", "--pool", "solo", "--concurrency", "1",
            "-Q", "orders", "--hostname", hostname(name), "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return ProcessRecord(name=name, argv=argv, log=str(rt.home / f"logs/{name}.log"), port=port,
                         env={**local_users.shop_env(rt, name), "SHOP_METRICS_PORT": str(port)})


def ready(rt, rec: ProcessRecord) -> bool:
    client = redis.Redis.from_url(rt.redis_url(), socket_timeout=1, socket_connect_timeout=1,
                                  retry=Retry(NoBackoff(), 0), decode_responses=True)
    try:
        return client.hget(WORKERS, hostname(rec.name)) == str(rec.pid)
    finally:
        client.close()
