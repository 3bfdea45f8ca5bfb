"""The primary's side of streaming replication (lab 04), applied the same way on every runtime.

``configure`` sets the learner's (or the reference's) settings with ``ALTER SYSTEM``, creates the
replication role, and puts its ``pg_hba.conf`` line in. Only reaching the primary's pg_hba.conf
differs per runtime, so each passes its own ``hba`` (``read()``/``write()``): a file on this host
(``local/standby.py``), inside the container (``compose/standby.py``) or the pod
(``kubernetes/standby.py``). How each runtime then makes the standby (``pg_basebackup -R``) is its own.
"""

import os
import re
import secrets
import time
from pathlib import Path

import asyncpg

from scalelab import aio, db
from scalelab.errors import ScalelabError

ROLE = "replicator"                                    # the role standbys connect as
ADDRESS = "127.0.0.1/32"                               # where a local standby connects from
HBA_MARK = "# scalelab lab 04: the replication exercise's line"
_NAME = re.compile(r"^[a-z_]+$")


class ReplicationSetupFailed(ScalelabError):
    """The primary rejected the replication configuration, or the base backup failed."""


# -- where things live ---------------------------------------------------------------
def home(rt) -> Path:
    return rt.home / "standby"


def password(rt) -> str:
    """The replication role's password, made by the driver once per state directory (0600)."""
    return password_in(home(rt))


def password_in(directory: Path) -> str:
    path = directory / "replication-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(18))
    return path.read_text().strip()


def _admin(rt, port: int | None = None) -> str:
    return rt.pg.dsn(port, "admin") if port else rt.database_url("admin")


# -- the primary's side -------------------------------------------------------------
def configure(rt, config, hba, address: str = ADDRESS) -> dict:
    """Apply ``config``'s primary side to the running primary; idempotent.

    ``config`` has ``primary_settings()``, ``replication_role_sql(role, password_literal)``
    and ``hba_line(role, standby_address)`` (the lab 04 exercise); ``address`` is the CIDR
    the standby connects from, ``hba`` the primary's pg_hba.conf (read()/write(): the runtime's).
    Returns what was applied.
    """
    settings = {str(k): str(v) for k, v in dict(config.primary_settings()).items()}
    restart = aio.run(_apply_settings(rt, settings))
    if restart:
        # wal_level / max_wal_senders are read at server start only: restart the primary.
        rt.restart("postgres")
    aio.run(_verify_settings(rt, settings))
    aio.run(_create_role(rt, config))
    _write_hba(hba, str(config.hba_line(ROLE, address)).strip())
    problems = aio.run(_reload_and_read_hba(rt))
    return {"settings": settings, "role": ROLE, "restarted_primary": restart, "hba_problems": problems,
            "hba_rule": hba_rule(rt, hba), "standby_address": address}


async def _apply_settings(rt, settings: dict[str, str]) -> bool:
    conn = await asyncpg.connect(_admin(rt), timeout=5)
    try:
        needs_restart = False
        for name, value in settings.items():
            if not _NAME.match(name):
                raise ReplicationSetupFailed(f"{name!r} is not a Postgres setting name")
            row = await conn.fetchrow("SELECT context, setting FROM pg_settings WHERE name = $1", name)
            if row is None:
                raise ReplicationSetupFailed(f"Postgres has no setting {name!r}")
            literal = await conn.fetchval("SELECT quote_literal($1)", value)
            try:
                await conn.execute(f"ALTER SYSTEM SET {name} = {literal}")
            except asyncpg.PostgresError as exc:
                raise ReplicationSetupFailed(f"ALTER SYSTEM SET {name} = {literal}: {exc}") from exc
            if row["context"] == "postmaster" and await conn.fetchval("SELECT current_setting($1)", name) != value:
                needs_restart = True
        await conn.execute("SELECT pg_reload_conf()")
        return needs_restart
    finally:
        await db.close(conn)


async def _verify_settings(rt, settings: dict[str, str]) -> None:
    """Wait (bounded) until a new session sees every reloadable setting."""
    deadline = time.monotonic() + 5
    while True:
        conn = await asyncpg.connect(_admin(rt), timeout=5)
        try:
            pending = [name for name in settings
                       if await conn.fetchval("SELECT pending_restart FROM pg_settings WHERE name = $1", name)]
        finally:
            await db.close(conn)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ReplicationSetupFailed(f"settings {pending} still wait for a restart of the primary")
        time.sleep(0.1)


async def _create_role(rt, config) -> None:
    conn = await asyncpg.connect(_admin(rt), timeout=5)
    try:
        literal = await conn.fetchval("SELECT quote_literal($1)", password(rt))
        sql = str(config.replication_role_sql(ROLE, literal))
        # Re-running the exercise starts over: the role is the exercise's, not a leftover.
        await conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        try:
            await conn.execute(sql)
        except asyncpg.PostgresError as exc:
            raise ReplicationSetupFailed(f"the role SQL failed: {exc}") from exc
    finally:
        await db.close(conn)


def _write_hba(hba, line: str) -> None:
    """The primary's pg_hba.conf without initdb's replication lines (yours is the only way
    in), plus ``line``."""
    if "\n" in line:
        raise ReplicationSetupFailed("hba_line() must return one line")
    kept, skip_next = [], False
    for raw in hba.read().splitlines():
        if skip_next:
            skip_next = False
            continue
        if raw.strip() == HBA_MARK:
            skip_next = True
            continue
        fields = raw.split()
        if fields and not raw.lstrip().startswith("#") and len(fields) > 1 and fields[1] == "replication":
            continue
        kept.append(raw)
    hba.write("\n".join([*kept, HBA_MARK, line, ""]))


async def _reload_and_read_hba(rt) -> list[str]:
    conn = await asyncpg.connect(_admin(rt), timeout=5)
    try:
        await conn.execute("SELECT pg_reload_conf()")
        rows = await conn.fetch("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL")
        return [f"line {r['line_number']}: {r['error']}" for r in rows]
    finally:
        await db.close(conn)


def hba_rule(rt, hba) -> dict | None:
    """How Postgres parsed the exercise's pg_hba.conf line (pg_hba_file_rules), or None."""
    lines = hba.read().splitlines()
    try:
        number = lines.index(HBA_MARK) + 2
    except ValueError:
        return None
    rows = db.fetch(_admin(rt), "SELECT type, database, user_name, address, netmask, auth_method, error "
                                "FROM pg_hba_file_rules WHERE line_number = $1", number)
    return rows[0] if rows else None
