"""Ask the lab's database a question from a notebook cell (synchronous, safe in Jupyter)."""

import asyncpg
import pandas as pd

from scalelab import aio


def fetch(dsn: str, sql: str, *args) -> list[dict]:
    async def go():
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()
    return aio.run(go())


def fetchval(dsn: str, sql: str, *args):
    rows = fetch(dsn, sql, *args)
    return next(iter(rows[0].values())) if rows else None


def frame(dsn: str, sql: str, *args) -> pd.DataFrame:
    return pd.DataFrame(fetch(dsn, sql, *args))


def service_connections(dsn: str, service: str = "shop-users") -> int:
    """How many connections the service's pools hold open right now (pg_stat_activity)."""
    return fetchval(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1", f"{service}:%")
