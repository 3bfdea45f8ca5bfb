"""The compose runtime's queue and event members: ``worker-N``, ``relay-1``, ``projector-1``.

None of them serves HTTP. As on local (local_worker, local_projector), a member is ready
when it has announced itself in Redis with its pid: a worker in the broker's
``orders:workers`` hash (field ``<member>@scalelab``, set on Celery's ``worker_ready``),
the relay and the projector in ``projector:members`` (the projector after joining its
consumer group). A pid inside a container is a pid of the container's own namespace
(``docker-init`` is 1, the command a small number) — the same number every incarnation,
so on its own it cannot tell a fresh announcement from a killed incarnation's leftover.
Two things make the probe as strong as local's:

* ``forget`` deletes the member's entry right before the driver starts its container,
  so the entry that appears was written by this incarnation;
* ``ready`` requires the announced pid to be the namespace pid of a process running in
  the container now (``docker top`` gives host pids; ``/proc/<pid>/status`` ``NSpid``
  maps them). Where the engine's pids are not visible here (a remote engine), the fresh
  entry alone is accepted.
"""

from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scalelab.runtimes.local import projector as local_projector
from scalelab.runtimes.local import worker as local_worker

SERVICES = ("worker", "relay", "projector")


def announcement(member: str) -> tuple[str, str]:
    """(hash, field) where ``member`` announces its pid."""
    if member.rsplit("-", 1)[0] == "worker":
        return local_worker.WORKERS, local_worker.hostname(member)
    return local_projector.MEMBERS, member


def _client(rt) -> redis.Redis:
    return redis.Redis.from_url(rt.redis_url(), socket_timeout=1, socket_connect_timeout=1,
                                retry=Retry(NoBackoff(), 0), decode_responses=True)


def forget(rt, member: str) -> None:
    """Delete the member's announcement (before its container starts)."""
    client = _client(rt)
    try:
        client.hdel(*announcement(member))
    except redis.RedisError:
        pass   # no Redis running: nothing announced there to be mistaken for this incarnation
    finally:
        client.close()


def namespace_pids(container) -> set[int] | None:
    """The pids the container's processes have in its own pid namespace (None: not visible)."""
    top = container.top()
    column = top["Titles"].index("PID")
    found, unreadable = set(), 0
    for row in top["Processes"]:
        try:
            status = Path(f"/proc/{row[column]}/status").read_text()
        except OSError:      # exited since `docker top`, or an engine whose pids are not ours
            unreadable += 1
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                found.add(int(line.split()[-1]))
    return None if unreadable and not found else found


def ready(rt, member: str, container) -> bool:
    client = _client(rt)
    try:
        announced = client.hget(*announcement(member))
    finally:
        client.close()
    if announced is None:
        return False
    pids = namespace_pids(container)
    return pids is None or int(announced) in pids
