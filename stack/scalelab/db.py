"""Ask the lab's database a question from a notebook cell (synchronous, safe in Jupyter)."""

import asyncio

import asyncpg
import pandas as pd

from scalelab import aio

CONNECT_TIMEOUT_S = 15.0   # through a Kubernetes port-forward on a busy machine a connect takes seconds
CONNECT_ATTEMPTS = 2


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection, tried again once when connecting (not a query) timed out or was refused."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            await asyncio.sleep(1.0)   # e.g. a port-forward re-opening to a restarted pod
    raise AssertionError("unreachable")


CLOSE_WAIT_S = 0.1


async def close(conn: asyncpg.Connection) -> None:
    """Close gracefully (Postgres gets its Terminate message) without waiting long for the server's
    side of the close: through a kubectl port-forward that arrives a second later, and a notebook
    polling the database would pay that second on every question."""
    try:
        await asyncio.wait_for(conn.close(), CLOSE_WAIT_S)
    except (TimeoutError, OSError, asyncpg.InterfaceError):
        conn.terminate()


def fetch(dsn: str, sql: str, *args) -> list[dict]:
    async def go():
        conn = await connect(dsn)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await close(conn)
    return aio.run(go())


def fetchval(dsn: str, sql: str, *args):
    rows = fetch(dsn, sql, *args)
    return next(iter(rows[0].values())) if rows else None


def frame(dsn: str, sql: str, *args) -> pd.DataFrame:
    return pd.DataFrame(fetch(dsn, sql, *args))


def service_connections(dsn: str, service: str = "shop-users") -> int:
    """How many connections the service's pools hold open right now (pg_stat_activity)."""
    return fetchval(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1", f"{service}:%")
