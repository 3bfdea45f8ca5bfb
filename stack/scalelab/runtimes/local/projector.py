"""The relay and the projector (``python -m shop.projector``) as local processes:
``relay-1`` and ``projector-1``.

The relay moves the order event log from Postgres to the Redis Stream ``orders.events``;
the projector consumes the stream in the consumer group ``projector`` and applies each
event to the read model with the learner's ``projector.py`` (see shop/projector.py).
Neither listens on a port. Each is ready when it has announced its pid in
``projector:members`` (the projector after joining the group).
SIGKILL is a crash: entries it read and did not acknowledge stay pending in the group,
and the next incarnation claims them (XAUTOCLAIM) before reading new ones.
"""

import sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scalelab.process import ProcessRecord
from scalelab.runtimes.local import users as local_users

MEMBERS = "projector:members"   # shop.projector.MEMBERS (the driver does not import the shop)


ROLE = "consume"


def record(rt, name: str, port: int, role: str = ROLE) -> ProcessRecord:
    # `port` is unused: the projector pulls from Postgres and the stream.
    return ProcessRecord(name=name, argv=[sys.executable, "-m", "shop.projector", role],
                         log=str(rt.home / f"logs/{name}.log"), port=port, env=local_users.shop_env(rt, name))


def ready(rt, rec: ProcessRecord) -> bool:
    client = redis.Redis.from_url(rt.redis_url(), socket_timeout=1, socket_connect_timeout=1,
                                  retry=Retry(NoBackoff(), 0), decode_responses=True)
    try:
        return client.hget(MEMBERS, rec.name) == str(rec.pid)
    finally:
        client.close()


class _Relay:
    """The ``relay`` service: the same program in its relay role (a separate process, so
    killing the projector leaves the relay publishing — the backlog builds in the stream)."""

    @staticmethod
    def record(rt, name: str, port: int) -> ProcessRecord:
        return record(rt, name, port, role="relay")

    ready = staticmethod(ready)


relay = _Relay()
