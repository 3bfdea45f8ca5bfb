"""Lab 04's hot standby on the compose runtime: ``standby-1`` is a container of the
``standby`` service (compose.yaml), from the same Postgres image as the primary.

Made the way the local runtime makes it (runtimes/local/standby.py), for real:

1. the primary's side of replication (settings with ``ALTER SYSTEM``, the replication role,
   the ``pg_hba.conf`` line) is applied to the ``postgres`` container — the same code as on
   local (``runtimes/common/replication.py``); the file is read and written inside the
   container (``docker exec``, as postgres).
   A standby connects from its address on the Compose network, so the exercise's
   ``hba_line(role, standby_address)`` is given that network's range (e.g. 172.18.0.0/16):
   the container's own address changes when it is made again;
2. the container's entrypoint (mode ``standby``), on its empty volume, runs
   ``pg_basebackup -h postgres -R -X stream`` as that role, then Postgres on the copy;
3. ready means: accepts connections on its published port AND ``pg_is_in_recovery()``.

``rebuild`` removes the container with its volume and creates it again (same host port):
a fresh base backup with whatever configuration the primary has now.
"""

import re

import asyncpg

from scalelab import aio
from scalelab.errors import ServiceFailed
from scalelab.ports import free_port
from scalelab.runtimes.common import replication
from scalelab.runtimes.common.replication import ReplicationSetupFailed

PGDATA = "/var/lib/postgresql/data"
_TOOK = re.compile(r"base backup of \S+ as \S+ took ([0-9.]+) s")


class ContainerHba:
    """The primary's pg_hba.conf, inside the ``postgres`` container."""

    def __init__(self, rt):
        self.rt = rt

    def _exec(self, argv: list[str]) -> str:
        code, out = self.rt._container("postgres").exec_run(argv, user="postgres")
        if code != 0:
            raise ReplicationSetupFailed(f"{argv[0]} in the postgres container failed: {out.decode()[-300:]}")
        return out.decode()

    def read(self) -> str:
        return self._exec(["cat", f"{PGDATA}/pg_hba.conf"])

    def write(self, text: str) -> None:
        self._exec(["python3", "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
                    f"{PGDATA}/pg_hba.conf", text])


def network_range(rt) -> str:
    """The subnet of the project's Compose network: where every container connects from."""
    container = rt._container("postgres")
    for name in (container.attrs["NetworkSettings"]["Networks"] or {}):
        for config in rt.client.networks.get(name).attrs.get("IPAM", {}).get("Config") or []:
            if config.get("Subnet") and ":" not in config["Subnet"]:
                return config["Subnet"]
    raise ServiceFailed("the postgres container is on no IPv4 Compose network")


def configure(rt, config) -> dict:
    """The primary side of replication, from ``config`` (the exercise or the reference)."""
    return replication.configure(rt, config, hba=ContainerHba(rt), address=network_range(rt))


def ensure(rt, compose, replicas: int) -> bool:
    """Standbys 1..replicas running and ready (compose.py's _ensure_service for ``standby``).
    The first one made in a stack takes the reference configuration of the primary (as local)."""
    containers = rt._containers("standby")
    started = False
    if not containers:
        from shop.reference import replication as reference
        configure(rt, reference)      # up(): the reference primary config (the check applies yours)
    for container in containers[:replicas]:
        if container.status == "paused":
            container.unpause()
        if container.status not in ("running", "paused"):
            container.start()
            started = True
    for index in range(len(containers) + 1, replicas + 1):
        _create(rt, compose, index, free_port())
        started = True
    if started:
        for member in rt.members("standby")[:replicas]:
            rt._wait_ready(member)
        rt._remember_addresses()
    return started


def _create(rt, compose, index: int, port: int) -> None:
    compose.run("up", "-d", "--no-deps", "--no-recreate", "--scale", f"standby={index}", "standby",
                env={"STANDBY_PORT": str(port), "STANDBY_NAME": f"standby-{index}"})


def rebuild(rt, member: str) -> float:
    """Remove ``member`` with its data volume, create it again on the same host port (a fresh
    ``pg_basebackup`` by its entrypoint), wait until ready. Returns the backup's seconds, as
    its entrypoint measured them."""
    container = rt._container(member)
    port = rt._published_port(container, member) or free_port()
    index = int(member.rsplit("-", 1)[1])
    if container.status == "paused":
        container.unpause()
    container.remove(force=True, v=True)      # the anonymous data volume goes with it
    _create(rt, rt._compose(), index, port)
    try:
        rt._wait_ready(member)
    except ServiceFailed as exc:
        raise ReplicationSetupFailed(str(exc)) from exc
    rt._remember_addresses()
    found = _TOOK.findall(rt.logs(member, 200))
    if not found:
        raise ServiceFailed(f"{member} is ready but its log names no base backup:\n{rt.logs(member, 20)}")
    return float(found[-1])


def ready(rt, member: str) -> bool:
    async def probe():
        conn = await asyncpg.connect(rt.database_url("admin", member=member), timeout=2)
        try:
            return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
        finally:
            await conn.close()
    return aio.run(probe())
