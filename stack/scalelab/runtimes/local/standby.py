"""A hot standby of the local Postgres: ``standby-1``, ``standby-2``, ... (lab 04).

The driver makes each one the way an operator would:

1. configure the primary for streaming replication (``configure``): settings with
   ``ALTER SYSTEM``, a role allowed to replicate, and a ``pg_hba.conf`` line letting it
   in — from the lab's replication exercise, or from ``shop.reference.replication``;
2. ``pg_basebackup -R -X stream`` as that role: a copy of the primary's data directory
   plus ``standby.signal`` and ``primary_conninfo``, so it starts as a standby;
3. start ``postgres`` on that copy, on its own port. It replays the primary's WAL as it
   streams in and answers read-only queries (``hot_standby``).

Ready means: accepts connections AND ``pg_is_in_recovery()``. As root the standby runs
as ``nobody`` from a scratch dir, like the primary. ``down(purge=True)`` deletes it.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg

from scalelab import aio, db
from scalelab.errors import ServiceFailed
from scalelab.paths import IS_ROOT, nobody_scratch
from scalelab.process import ProcessRecord
from scalelab.runtimes.common import replication
from scalelab.runtimes.common.replication import ROLE, ReplicationSetupFailed, _admin, home, password
from scalelab.waiting import wait_until


# -- where things live ---------------------------------------------------------------
def data_dir(rt, name: str) -> Path:
    base = nobody_scratch(rt.home, name) if IS_ROOT else home(rt) / name
    return base / "data"


def _primary_port(rt) -> int:
    return rt.procs["postgres"].port


def _as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv] if IS_ROOT else argv


class LocalHba:
    """The primary's pg_hba.conf on this host (root writes in place: the file keeps its owner).
    The compose runtime has its own (runtimes/compose/standby.py), inside the container."""

    def __init__(self, rt):
        self.path = rt.pg.data_dir / "pg_hba.conf"

    def read(self) -> str:
        return self.path.read_text()

    def write(self, text: str) -> None:
        self.path.write_text(text)


def configure(rt, config) -> dict:
    """The local primary's side of replication (``common/replication.configure``), its pg_hba.conf on this host."""
    return replication.configure(rt, config, hba=LocalHba(rt))


# -- 2. the base backup ------------------------------------------------------------------
def base_backup(rt, name: str) -> float:
    """``pg_basebackup -R`` of the primary into ``name``'s data dir, as the replication role.
    Returns the seconds it took."""
    target = data_dir(rt, name)
    remove(rt, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if IS_ROOT:
        os.chmod(target.parent, 0o700)
        os.chown(target.parent, *_nobody_ids())
    argv = _as_nobody([rt.pg.tool("pg_basebackup"), "-h", "127.0.0.1", "-p", str(_primary_port(rt)),
                       "-U", ROLE, "-D", str(target), "-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"])
    env = {**os.environ, "PGPASSWORD": password(rt), "PGAPPNAME": name}
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    if out.returncode != 0:
        remove(rt, name)
        raise ReplicationSetupFailed(f"pg_basebackup as {ROLE!r} failed: {(out.stderr or out.stdout).strip()[-600:]}")
    return time.monotonic() - started


def _nobody_ids() -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def remove(rt, name: str) -> None:
    shutil.rmtree(data_dir(rt, name).parent, ignore_errors=True)


def initialised(rt, name: str) -> bool:
    return (data_dir(rt, name) / "standby.signal").exists()


def rebuild(rt, name: str) -> float:
    """Stop ``name`` (if it runs), make a new base backup, start it and wait until ready."""
    rec = rt.procs.get(name)
    if rec is not None:
        rec.stop()
    seconds = base_backup(rt, name)
    rt._ensure_member("standby", int(name.rsplit("-", 1)[1]))
    rt._save()
    return seconds


# -- 3. the service protocol of runtimes/local.py ------------------------------------------
def record(rt, name: str, port: int) -> ProcessRecord:
    if not initialised(rt, name):
        from shop.reference import replication as reference
        configure(rt, reference)          # up(): the reference primary config (the check applies yours)
        base_backup(rt, name)
    else:
        _follow_primary_port(rt, name)
    return rt.pg.process(name, port, str(rt.home / f"logs/{name}.log"), data_dir=data_dir(rt, name))


def _follow_primary_port(rt, name: str) -> None:
    """The primary came back on another port (its old one was taken): point the standby's
    primary_conninfo (written by pg_basebackup -R) at the new one. The file keeps its owner."""
    path = data_dir(rt, name) / "postgresql.auto.conf"
    text = path.read_text()
    fixed = re.sub(r"(primary_conninfo = '[^\n]*?\bport=)\d+", rf"\g<1>{_primary_port(rt)}", text)
    if fixed != text:
        path.write_text(fixed)


def ready(rt, rec: ProcessRecord) -> bool:
    async def probe():
        conn = await asyncpg.connect(rt.pg.dsn(rec.port, "admin"), timeout=2)
        try:
            return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
        finally:
            await conn.close()
    try:
        return aio.run(probe())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False


def client_env(rt, service: str) -> dict[str, str]:
    """What the user service needs to read from a standby: its DSN (the first standby)."""
    if service != "users" or not rt.members("standby"):
        return {}
    return {"SHOP_DATABASE_REPLICA_URL": rt.pg.dsn(rt.procs[rt.members("standby")[0]].port, "app")}


def wait_streaming(rt, name: str, timeout: float = 15.0) -> dict:
    """Wait (bounded) until the primary's pg_stat_replication shows ``name`` streaming."""
    def replication_row():
        rows = db.fetch(_admin(rt), "SELECT usename, application_name, state FROM pg_stat_replication "
                                    "WHERE application_name = $1", name)
        return rows[0] if rows else None
    return wait_until(replication_row, timeout, interval=0.1, error=ServiceFailed,
                      done=lambda found: bool(found and found["state"] == "streaming"),
                      on_timeout=lambda found: f"{name} is not streaming from the primary after {timeout:.0f}s "
                                               f"(pg_stat_replication: {found}); its log ends with:\n"
                                               f"{rt.procs[name].log_tail()}")
