"""The asyncpg connection pool: sized at start-up, opened and closed with the app."""

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import asyncpg
from fastapi import Request, Response

from shop.config import Settings
from shop.errors import DomainError, ExerciseError, ExerciseNotDone, Unavailable

log = logging.getLogger("uvicorn.error")
T = TypeVar("T")

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
    except TimeoutError:
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
    except asyncpg.ReadOnlySQLTransactionError as exc:
        raise ReadOnlyDatabase(f"this service's database is a read-only standby: {exc}") from exc


class ReadOnlyDatabase(DomainError):
    """A write reached a hot standby (e.g. SHOP_DATABASE_URL names the standby by mistake)."""

    status_code = 503
    code = "read_only_database"


# -- read/write split (lab 04) ------------------------------------------------------------
# Writes always go to the primary (connection() above). A read may go to the replica pool
# (SHOP_DATABASE_REPLICA_URL); the read_routing exercise decides, per request, from the
# LSN of the client's last write (a cookie). A replica that is down, starting, or cancels
# the query (a conflict with recovery) costs a retry on the primary, never an error.
WRITE_LSN_COOKIE = "shop_write_lsn"
_LSN_COOKIE = re.compile(r"^[0-9A-F]{1,8}-[0-9A-F]{1,8}$")
REPLICA_FALLBACK = (*DB_UNAVAILABLE, asyncpg.PostgresConnectionError, asyncpg.SerializationError,
                    asyncpg.InternalClientError)


async def replica_pool(request: Request) -> asyncpg.Pool | None:
    """The app's pool on the replica, made on first use (None without a replica).
    min_size=0: nothing connects until a read needs it, so the service starts (and is
    ready) while the standby is down."""
    state, settings = request.app.state, request.app.state.settings
    if not settings.database_replica_url:
        return None
    if getattr(state, "replica_pool", None) is None:
        if getattr(state, "replica_pool_lock", None) is None:
            state.replica_pool_lock = asyncio.Lock()
        async with state.replica_pool_lock:
            if getattr(state, "replica_pool", None) is None:
                state.replica_pool = await asyncpg.create_pool(
                    settings.database_replica_url, min_size=0, max_size=settings.replica_pool_max_size, timeout=2,
                    command_timeout=settings.statement_timeout_ms / 1000 or None,
                    server_settings={"application_name": f"shop-users-replica:{settings.instance}",
                                     "statement_timeout": str(settings.statement_timeout_ms)})
    return state.replica_pool


def write_lsn(request: Request) -> str | None:
    """The LSN of this client's last write (its cookie), as Postgres spells it: ``0/3000148``."""
    raw = request.cookies.get(WRITE_LSN_COOKIE)
    if raw is None:
        return None
    if not _LSN_COOKIE.match(raw):
        raise DomainError(f"cookie {WRITE_LSN_COOKIE} is not a WAL position (like 0-3000148)")
    return raw.replace("-", "/")


async def remember_write(request: Request, response: Response, conn: asyncpg.Connection) -> None:
    """After a committed write: tell the client where the WAL stood (a cookie), so its
    next reads can wait for the replica to get there. Without a replica: nothing to do."""
    request.state.db_node = "primary"
    settings = request.app.state.settings
    if settings.database_replica_url:
        lsn = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        response.set_cookie(WRITE_LSN_COOKIE, lsn.replace("/", "-"), max_age=settings.write_lsn_cookie_max_age_s,
                            httponly=True, samesite="lax")


async def run_read(request: Request, query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run the read ``query(conn)`` on the node read routing picks; ``request.state.db_node``
    says which one answered ("primary" or "replica")."""
    pool = await replica_pool(request)
    if pool is not None:
        lsn = write_lsn(request)
        state = request.app.state
        try:
            async with pool.acquire(timeout=state.settings.acquire_timeout_s) as conn:
                node = await state.exercises.call("read_routing", "choose_node", lsn, conn,
                                                  passthrough=REPLICA_FALLBACK)
                if node not in ("primary", "replica"):
                    raise ExerciseError(f"choose_node() returned {node!r}: return 'primary' or 'replica'")
                if node == "replica":
                    result = await query(conn)
                    request.state.db_node = "replica"
                    return result
        except ExerciseNotDone:
            pass                                     # routing not written yet: every read on the primary
        except REPLICA_FALLBACK as exc:
            state.replica_fallbacks = getattr(state, "replica_fallbacks", 0) + 1
            if state.replica_fallbacks == 1 or state.replica_fallbacks % 100 == 0:
                log.warning("replica unavailable (%s: %s): reads fall back to the primary (%d so far)",
                            type(exc).__name__, exc, state.replica_fallbacks)
    async with connection(request) as conn:
        result = await query(conn)
    request.state.db_node = "primary"
    return result
