"""The asyncpg connection pool: sized at start-up, opened and closed with the app."""

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg
from fastapi import Request

from shop.config import Settings
from shop.errors import Unavailable

# What a lost or unreachable database looks like from asyncpg: the request gets a 503.
DB_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,   # statement_timeout: the database is too busy to answer in time
)


async def server_max_connections(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()


async def create_pool(settings: Settings, min_size: int, max_size: int, app_name: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=min_size,
        max_size=max_size,
        timeout=5,
        command_timeout=settings.statement_timeout_ms / 1000 or None,
        server_settings={
            "application_name": app_name,
            "statement_timeout": str(settings.statement_timeout_ms),
        },
    )


async def close_pool(pool: asyncpg.Pool, timeout: float = 5.0) -> None:
    """Wait for borrowed connections to come back, then close; force after ``timeout``."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except asyncio.TimeoutError:
        pool.terminate()


@asynccontextmanager
async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """Borrow a connection for one request; a busy or lost database becomes a 503."""
    pool: asyncpg.Pool = request.app.state.pool
    timeout = request.app.state.settings.acquire_timeout_s
    try:
        async with pool.acquire(timeout=timeout) as conn:
            yield conn
    except DB_UNAVAILABLE as exc:
        raise Unavailable(f"database unavailable or too slow: {type(exc).__name__}") from exc
