"""Lab 04's hot standby on Kubernetes: ``standby-1`` is the pod of the ``standby`` StatefulSet
(components/standby), the postgres image in its ``standby`` mode, its data on a volume of its own.

Made the way local and compose make it (runtimes/local/standby.py), for real:

1. the primary's side of replication (settings with ``ALTER SYSTEM``, the replication role,
   the ``pg_hba.conf`` line) is applied to the ``postgres`` pod — the same code as on local
   (``runtimes/common/replication.py``);
   the file is read and written inside the pod (``kubectl exec``). The standby connects from
   a pod address, so the exercise's ``hba_line(role, standby_address)`` is given the
   cluster's pod network (the range covering every node's pod CIDR);
2. the StatefulSet starts at 0 replicas; once the primary is configured the driver scales it
   to 1: the pod's entrypoint, on its empty volume, runs ``pg_basebackup -h postgres -R -X
   stream`` as that role, then Postgres on the copy;
3. ready means: its pod is Ready (accepts connections) AND ``pg_is_in_recovery()``.

``rebuild`` scales it to 0, deletes its volume claim (the data), and scales it back to 1: a
fresh base backup with whatever configuration the primary has now.
"""

import ipaddress
import re

import asyncpg

from scalelab import aio, db
from scalelab.errors import ServiceFailed
from scalelab.runtimes.common import replication
from scalelab.runtimes.common.replication import ReplicationSetupFailed
from scalelab.waiting import wait_until

PGDATA = "/var/lib/postgresql/data/pgdata"
MEMBER = "standby-1"
CLAIM = "data-standby-0"
_TOOK = re.compile(r"base backup of \S+ as \S+ took ([0-9.]+) s")
_WRITE = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"


class PodHba:
    """The primary's pg_hba.conf, inside the ``postgres`` pod."""

    def __init__(self, rt):
        self.rt = rt

    def _exec(self, argv: list[str]) -> str:
        code, out = self.rt.exec("postgres", argv)
        if code != 0:
            raise ReplicationSetupFailed(f"{argv[0]} in the postgres pod failed: {out[-300:]}")
        return out

    def read(self) -> str:
        return self._exec(["cat", f"{PGDATA}/pg_hba.conf"])

    def write(self, text: str) -> None:
        self._exec(["python3", "-c", _WRITE, f"{PGDATA}/pg_hba.conf", text])


def pod_network(rt) -> str:
    """The smallest IPv4 network holding every node's pod CIDR: where any pod connects from."""
    cidrs = [ipaddress.IPv4Network(node.spec.pod_cidr) for node in rt.core.list_node().items
             if node.spec.pod_cidr and ":" not in node.spec.pod_cidr]
    if not cidrs:
        raise ServiceFailed("no node of the cluster has an IPv4 pod CIDR: where would the standby connect from?")
    network = cidrs[0]
    while not all(cidr.subnet_of(network) for cidr in cidrs):
        network = network.supernet()
    return str(network)


def configure(rt, config) -> dict:
    """The primary side of replication, from ``config`` (the exercise or the reference)."""
    return replication.configure(rt, config, hba=PodHba(rt), address=pod_network(rt))


def ensure(rt, replicas: int) -> bool:
    """``standby-1`` running and ready (up()): the first time in a stack, the primary is given the
    reference configuration (as on local; the check applies the learner's), then the
    StatefulSet is scaled up. True when it was started now."""
    if replicas != 1:
        raise ServiceFailed("the lab runs one standby")
    if (rt._workload("standby").spec.replicas or 0) >= 1:
        return False
    from shop.reference import replication as reference
    configure(rt, reference)
    _scale_up(rt)
    return True


def _scale_up(rt) -> None:
    rt.names.starting("standby", MEMBER)
    rt._save()
    rt._set_replicas("standby", 1)
    try:
        rt._wait_member_ready(MEMBER)
        _wait_recovering(rt)
    except ServiceFailed as exc:
        raise ReplicationSetupFailed(str(exc)) from exc


def rebuild(rt, member: str) -> float:
    """Remove ``member`` with its data, make it again (a fresh ``pg_basebackup`` by its entrypoint),
    wait until ready. Returns the backup's seconds, as its entrypoint measured them."""
    from kubernetes.client.exceptions import ApiException
    if member != MEMBER:
        raise ServiceFailed(f"no standby {member!r}: the lab runs {MEMBER}")
    followers = {p.metadata.name: rt._follow_log(p.metadata.name, "standby") for p in rt._pods("standby")}
    rt.names.down("standby", member)
    rt._set_replicas("standby", 0)
    for pod, follower in followers.items():
        rt._wait_pod_gone(pod, keep_log_of=member, follower=follower)
    try:
        rt.core.delete_namespaced_persistent_volume_claim(CLAIM, rt.namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
    wait_until(lambda: not rt.core.list_namespaced_persistent_volume_claim(
                   rt.namespace, field_selector=f"metadata.name={CLAIM}").items,
               60, interval=0.25, error=ServiceFailed,   # polling the claim's removal (bounded)
               on_timeout=f"the standby's volume claim {CLAIM} is still there 60 s after its deletion")
    _scale_up(rt)
    found = _TOOK.findall(rt.logs(member, 200))
    if not found:
        raise ServiceFailed(f"{member} is ready but its log names no base backup:\n{rt.logs(member, 20)}")
    return float(found[-1])


def _wait_recovering(rt, timeout: float = 30) -> None:
    async def probe():
        conn = await asyncpg.connect(rt.database_url("admin", member=MEMBER), timeout=5)
        try:
            return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
        finally:
            await db.close(conn)
    wait_until(lambda: aio.run(probe()), timeout, interval=0.25,   # polling the standby (bounded)
               transient=(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError), error=ServiceFailed,
               on_timeout=lambda _: f"{MEMBER} is not a standby in recovery after {timeout:.0f}s:\n"
                                    f"{rt.logs(MEMBER, 20)}")
