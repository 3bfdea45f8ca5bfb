"""Lab 01 — the stateless user service: exercises and their live checks."""

import ast
import inspect
import os
import threading
import time
import uuid

import httpx

from scalelab import db, load
from scalelab.exercise import CheckFailed, Exercise, NotAttempted, expect_status

RESERVED = 8  # superuser_reserved_connections (3) + room for migrations and psql (5)


# -- exercise 1: the query behind GET /users/{id} ------------------------------------
def _formats_sql(fn) -> bool:
    """True when SQL is built by formatting values into the string (f-string, %, +, .format)."""
    tree = ast.parse(inspect.getsource(fn).lstrip())
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
            return True
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)) and any(
                isinstance(side, ast.Constant) and isinstance(side.value, str) for side in (node.left, node.right)):
            return True
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "format":
            return True
    return False


PROBE_ID = 987_654_321   # the id a probe call passes: its digits in the SQL text mean it was formatted in
PROBE_TEXT = "987654321 /* scalelab probe */"


class _ProbeId(int):
    """An int whose text is not its integer literal: if it reaches the SQL string, the string was
    built from the value (f-string, %, +, str(), join, format), whatever the code looked like."""
    def __str__(self):
        return PROBE_TEXT

    __repr__ = __str__

    def __format__(self, spec):
        return PROBE_TEXT


class _RecordingConnection:
    """Stands in for the asyncpg connection in one probe call: records each statement and its
    arguments, finds no row."""
    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []

    async def _record(self, sql, *args, **kwargs):
        self.calls.append((str(sql), args))

    async def fetchrow(self, sql, *args, **kwargs):
        await self._record(sql, *args)
        return None

    async def fetch(self, sql, *args, **kwargs):
        await self._record(sql, *args)
        return []

    async def fetchval(self, sql, *args, **kwargs):
        await self._record(sql, *args)
        return None

    async def execute(self, sql, *args, **kwargs):
        await self._record(sql, *args)
        return "SELECT 0"


def _probe_formats_sql(fetch_user) -> bool:
    """Call fetch_user once with a probe id on a recording connection: True when the id's text
    reached a statement. A call the recorder cannot follow proves nothing (the live check follows)."""
    import asyncio

    from scalelab import aio
    conn = _RecordingConnection()

    async def call():
        await asyncio.wait_for(fetch_user(conn, _ProbeId(PROBE_ID)), timeout=5)
    try:
        aio.run(call())   # in a helper thread: Jupyter's own loop is running here
    except Exception:
        pass
    return any(str(PROBE_ID) in sql or "scalelab probe" in sql for sql, _ in conn.calls)


def _said(response: httpx.Response) -> str:
    """What an answer says, in one line: its JSON ``detail`` (the service's errors), else its text."""
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:200] or "(an empty body)"


def _get(url: str) -> httpx.Response:
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError as exc:
        raise CheckFailed(f"GET {url} did not answer ({type(exc).__name__}): does fetch_user block the service, "
                          "e.g. time.sleep() or a driver that is not async? stack.logs('users-1') shows "
                          "what it was doing") from None


def _check_fetch_user(stack, exercise) -> str:
    fetch_user = exercise.function(stack, "fetch_user")
    if not inspect.iscoroutinefunction(fetch_user):
        raise CheckFailed("fetch_user must be `async def`: asyncpg's conn.fetchrow() is awaited")
    if _formats_sql(fetch_user) or _probe_formats_sql(fetch_user):
        raise CheckFailed("the SQL is built by formatting a value into the string: write `WHERE id = $1` "
                          "and pass user_id as an argument to fetchrow (parametrized, never injectable)")
    stack.restart("users")  # the service loads user_queries.py from the workspace at start
    base = stack.url("users")
    email = f"check-{uuid.uuid4().hex[:8]}@example.com"
    created = httpx.post(f"{base}/users", json={"email": email, "name": "Check Ada"}, timeout=10)
    expect_status(created, 201, "POST /users", " — is the stack healthy? (stack.status(), stack.logs('users-1'))")
    want = created.json()
    got = _get(f"{base}/users/{want['id']}")
    if got.status_code == 501:
        raise NotAttempted(_said(got))
    if got.status_code == 500:
        raise CheckFailed(f"the service ran your fetch_user and it failed: {_said(got)}")
    if got.status_code == 503:
        raise CheckFailed(f"GET /users/{want['id']} answered 503: {_said(got)} — a query slower than the "
                          "service's statement timeout, or a database that is down (stack.status())?")
    if got.status_code == 404:
        raise CheckFailed(f"GET /users/{want['id']} answered 404 for a user that exists: "
                          "does your query look the row up by its id?")
    if got.status_code != 200 or got.json() != want:
        raise CheckFailed(f"GET /users/{want['id']} returned {got.status_code} {got.text[:200]}, expected {want}: "
                          "return the row's id, email, name and created_at as a dict")
    missing = want["id"] + 1_000_000
    expect_status(_get(f"{base}/users/{missing}"), 404, f"GET /users/{missing} (no such user)",
                  ": fetch_user must return None when fetchrow finds no row")
    return (f"the service ran your fetch_user: GET /users/{want['id']} → 200 with the created user, "
            f"/users/{missing} → 404 (served by {got.headers.get('x-instance')})")


fetch_user = Exercise(
    name="user_queries",
    title="Exercise 1 · fetch_user",
    checker=_check_fetch_user,
    hints=[
        "asyncpg: `row = await conn.fetchrow(sql, user_id)` returns one Record or None.",
        "The SQL is `SELECT id, email, name, created_at FROM users WHERE id = $1` — $1 is filled by asyncpg.",
        "A Record converts with dict(row); return None when row is None.",
    ],
    reference="shop.reference.user_queries",
    handle="lab01.fetch_user",
)


# -- exercise 2: size the connection pool --------------------------------------------
GRID = [(cpu, conns, replicas) for cpu in (1, 2, 8, 64) for conns in (20, 100, 500) for replicas in (1, 3, 10)]


def _check_rules(pool_size) -> None:
    for cpu, conns, replicas in GRID:
        try:
            result = pool_size(cpu, conns, replicas)
        except NotImplementedError:
            raise NotAttempted("pool_size() still raises NotImplementedError") from None
        except Exception as exc:
            raise CheckFailed(f"pool_size({cpu}, {conns}, {replicas}) raised {type(exc).__name__}: {exc}") from None
        if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(v, int) for v in result)):
            raise CheckFailed(f"pool_size({cpu}, {conns}, {replicas}) returned {result!r}: "
                              "return (min_size, max_size) as two ints")
        low, high = result
        budget = (conns - RESERVED) // replicas
        if not 1 <= low <= high:
            raise CheckFailed(f"pool_size({cpu}, {conns}, {replicas}) = {result}: need 1 <= min_size <= max_size")
        if low > 2:
            raise CheckFailed(f"pool_size({cpu}, {conns}, {replicas}) = {result}: "
                              "keep at most 2 idle connections (min_size <= 2)")
        if budget >= 1 and high * replicas > conns - RESERVED:
            raise CheckFailed(f"pool_size({cpu}, {conns}, {replicas}) = {result}: {replicas} replicas × {high} = "
                              f"{high * replicas} connections, over max_connections - {RESERVED} = {conns - RESERVED}")
        if high > max(4 * cpu, 1) and high > 1:
            raise CheckFailed(f"pool_size({cpu}, {conns}, {replicas}) = {result}: more than 4 connections per core "
                              f"in one replica's pool (rule 2: at most {4 * cpu} with {cpu} cores)")
        if high < min(budget, 2 * cpu):
            raise CheckFailed(f"pool_size({cpu}, {conns}, {replicas}) = {result}: the budget allows "
                              f"{min(budget, 4 * cpu)} — a pool under 2 per core makes requests queue for a connection")


def _peak_connections(stack, duration: float) -> tuple[int, "load.LoadResult"]:
    dsn, peak = stack.database_url("app"), 0
    result: dict[str, load.LoadResult] = {}
    runner = threading.Thread(target=lambda: result.setdefault(
        "load", load.run(stack.url("users"), ["/users/1"], users=64, duration=duration, label="pool check")))
    runner.start()
    while runner.is_alive():
        peak = max(peak, db.service_connections(dsn))
        time.sleep(0.05)
    runner.join()
    if "load" not in result:
        raise CheckFailed("the load run did not finish: see stack.logs('users-1')")
    return peak, result["load"]


def _check_pool(stack, exercise) -> str:
    pool_size = exercise.function(stack, "pool_size")
    _check_rules(pool_size)
    stack.restart("users")
    base = stack.url("users")
    stats = httpx.get(f"{base}/stats", timeout=10).json()["pool"]
    if not stats["source"].startswith("workspace"):
        raise CheckFailed(f"the service did not use your pool_size(): its pool came from {stats['source']}")
    max_connections = int(db.fetchval(stack.database_url("app"), "SHOW max_connections"))
    low, high = pool_size(os.cpu_count() or 1, max_connections, 3)
    if (stats["min_size"], stats["max_size"]) != (low, high):
        raise CheckFailed(f"the service's pool is {stats['min_size']}..{stats['max_size']}, "
                          f"your function says {low}..{high}")
    httpx.post(f"{base}/users", json={"email": f"pool-{uuid.uuid4().hex[:8]}@example.com", "name": "Pool"}, timeout=10)
    peak, result = _peak_connections(stack, duration=2.0)
    if result.failures:
        raise CheckFailed(f"{result.failures} of {result.requests} requests failed under 64 concurrent users")
    if not 1 <= peak <= high:
        raise CheckFailed(f"Postgres saw {peak} connections from the service, outside 1..{high}")
    return (f"pool {low}..{high} (cpu={os.cpu_count()}, max_connections={max_connections}, 3 replicas planned); "
            f"under 64 concurrent users Postgres saw at most {peak} connections, {result.requests} requests, 0 failed")


pool = Exercise(
    name="pool",
    title="Exercise 2 · pool_size",
    checker=_check_pool,
    hints=[
        "Start from the budget one replica may use: (db_max_connections - RESERVED) // replicas.",
        "Cap it by what the CPUs can run at once (4 * cpu_count) and keep at least 1: "
        "max(1, min(budget, 4 * cpu_count)).",
        "min_size is how many connections stay open when idle: min(2, max_size).",
    ],
    reference="shop.reference.pool",
    handle="lab01.pool",
)
