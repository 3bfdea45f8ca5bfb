"""Lab 03 — Redis: a cache-aside user cache and a rate limiter shared by every replica."""

import asyncio
import inspect
import json
import time
import uuid

import httpx
import pandas as pd
import redis

from scalelab import aio, db
from scalelab.exercise import CheckFailed, Exercise, NotAttempted

# The query lab 01's fetch_user sends: what pg_stat_statements counts as one DB read.
USER_READ = "SELECT id, email, name, created_at FROM users WHERE id = $1"


# -- helpers the checks and the notebook share -----------------------------------------
def redis_client(stack) -> redis.Redis:
    """A synchronous client of the stack's Redis (answers are str, not bytes)."""
    return redis.Redis.from_url(stack.redis_url(), socket_timeout=2, socket_connect_timeout=2, decode_responses=True)


def _shop_admin_dsn(stack) -> str:
    return stack.database_url("admin").rsplit("/", 1)[0] + "/shop"


def reset_db_reads(stack) -> None:
    """Zero Postgres' statement counters (pg_stat_statements; needs the admin role)."""
    db.fetch(_shop_admin_dsn(stack), "SELECT pg_stat_statements_reset()")


def db_reads(stack) -> int:
    """How many times Postgres ran the user lookup since ``reset_db_reads``."""
    return int(db.fetchval(stack.database_url(), "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                           r"WHERE regexp_replace(query, '\s+', ' ', 'g') = $1", USER_READ))


def fire(url: str, total: int, headers: dict | None = None, concurrency: int = 32) -> pd.DataFrame:
    """Send ``total`` GETs to ``url`` at once (``concurrency`` in flight); one row per response."""
    async def go():
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=10, limits=limits, headers=headers or {}) as client:
            async def one(_):
                r = await client.get(url)
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
                return {"status": r.status_code, "instance": r.headers.get("x-instance"),
                        "retry_after": r.headers.get("retry-after"),
                        "error": body.get("error") if isinstance(body, dict) else None}
            return await asyncio.gather(*map(one, range(total)))
    return pd.DataFrame(aio.run(go()))


def _stats(stack) -> dict:
    member = stack.members("users")[0]
    return httpx.get(f"{stack.member_url(member)}/stats", timeout=10).json()


def _behind_balancer(stack) -> bool:
    return stack.url("users") not in {stack.member_url(m) for m in stack.members("users")}


def _require_async(fn, name: str, why: str) -> None:
    if not inspect.iscoroutinefunction(fn):
        raise CheckFailed(f"{name} must be `async def`: {why}")


# -- exercise 1: cache-aside for GET /users/{id} ------------------------------------
def _check_user_cache(stack, exercise) -> str:
    _require_async(exercise.function(stack, "get_user"), "get_user", "redis.asyncio commands are awaited")
    _require_async(exercise.function(stack, "forget_user"), "forget_user", "redis.asyncio commands are awaited")
    stack.restart("users")   # every replica loads user_cache.py from the workspace at start
    cache = _stats(stack)["cache"]
    if not cache["enabled"]:
        raise CheckFailed(f"the service does not run your cache: {cache['off_reason']}")
    base, r = stack.url("users"), redis_client(stack)
    with httpx.Client(base_url=base, timeout=10) as api:
        created = api.post("/users", json={"email": f"cache-{uuid.uuid4().hex[:8]}@example.com", "name": "Cache Check"})
        if created.status_code != 201:
            raise CheckFailed(f"POST /users answered {created.status_code} {created.text[:200]}: is the stack healthy?")
        user = created.json()
        key = f"user:{user['id']}"
        r.delete(key)
        reset_db_reads(stack)
        reads = [api.get(f"/users/{user['id']}") for _ in range(6)]
        for got in reads:
            if got.status_code == 501:
                raise NotAttempted(got.json()["detail"])
            if got.status_code == 500:
                raise CheckFailed(f"the service ran your get_user and it failed: {got.json().get('detail')}")
            if got.status_code != 200:
                raise CheckFailed(f"GET /users/{user['id']} answered {got.status_code} {got.text[:200]}")
            if got.json() != user:
                raise CheckFailed(f"GET /users/{user['id']} returned {got.json()}, the database holds {user}: "
                                  "a cached user must come back exactly as the database's (JSON round trip)")
        served = sorted({got.headers.get("x-instance") for got in reads})
        n_db = db_reads(stack)
        if n_db >= len(reads):
            raise CheckFailed(f"{len(reads)} GETs of one user cost {n_db} database reads: every read still goes "
                              "to the database — return the cached copy when Redis has one")
        if not r.exists(key):
            raise CheckFailed(f"after a GET, Redis holds nothing under {key!r}: store the user under user_key(user_id)")
        ttl, ttl_s = r.ttl(key), cache["ttl_s"]
        if ttl == -1:
            raise CheckFailed(f"{key!r} has no expiry: set it with a TTL (ex=ttl_s), or a missed invalidation "
                              "leaves it stale forever")
        if not 0 < ttl <= ttl_s:
            raise CheckFailed(f"{key!r} expires in {ttl} s; the service's TTL is {ttl_s} s: use ex=ttl_s")
        try:
            json.loads(r.get(key))
        except (TypeError, ValueError):
            raise CheckFailed(f"{key!r} does not hold JSON: store json.dumps(user, default=str)") from None
        if n_db != 1:
            raise CheckFailed(f"{len(reads)} GETs of one user cost {n_db} database reads, expected 1 (the first miss)")

        renamed = api.patch(f"/users/{user['id']}", json={"name": "Cache Check Renamed"})
        if renamed.status_code != 200:
            raise CheckFailed(f"PATCH /users/{user['id']} answered {renamed.status_code} {renamed.text[:200]}")
        after = [api.get(f"/users/{user['id']}").json().get("name") for _ in range(3)]
        if any(name != "Cache Check Renamed" for name in after):
            raise CheckFailed(f"after PATCH the next reads returned names {after}: a stale read — "
                              "forget_user must delete the cached copy")
        deleted = api.delete(f"/users/{user['id']}")
        gone = [api.get(f"/users/{user['id']}").status_code for _ in range(3)]
        if deleted.status_code != 204 or any(code != 404 for code in gone):
            raise CheckFailed(f"after DELETE the reads answered {gone}: the deleted user is still served from the cache")

        other = api.post("/users", json={"email": f"cache-{uuid.uuid4().hex[:8]}@example.com", "name": "Redis Down"}).json()
        redis_member = stack.members("redis")[0]
        stack.kill(redis_member)
        try:
            down = [api.get(f"/users/{other['id']}") for _ in range(3)]
        finally:
            stack.start(redis_member)
        if any(got.status_code != 200 or got.json() != other for got in down):
            bad = next(got for got in down if got.status_code != 200 or got.json() != other)
            raise CheckFailed(f"with Redis down GET /users/{other['id']} answered {bad.status_code} {bad.text[:160]}: "
                              "a cache failure must fall back to the database (let Redis errors propagate, "
                              "the service catches them; don't turn them into None)")
    return (f"6 GETs of a new user → 1 database read (served by {', '.join(served)}); key {key!r} TTL {ttl} s; "
            f"PATCH then GET → new name; DELETE then GET → 404; Redis killed → 200 from the database")


user_cache = Exercise(
    name="user_cache",
    title="Exercise 1 · cache-aside get_user / forget_user",
    checker=_check_user_cache,
    hints=[
        "get_user: `cached = await redis.get(user_key(user_id))`; when it is not None, return json.loads(cached).",
        "On a miss: `user = await load_from_db(user_id)`; when the user exists, "
        "`await redis.set(user_key(user_id), json.dumps(user, default=str), ex=ttl_s)`; return user.",
        "forget_user is one command: `await redis.delete(user_key(user_id))`. Let Redis errors propagate: "
        "the service turns them into the database path.",
    ],
    reference="shop.reference.user_cache",
    handle="lab03.user_cache",
)


# -- exercise 2: a rate limiter shared by every replica -----------------------------
def _burst(stack, limit: int) -> tuple[pd.DataFrame, str, float]:
    client = f"check-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    frame = fire(f"{stack.url('users')}/users?limit=1", 3 * limit, {"X-Client-Id": client}, concurrency=3 * limit)
    return frame, client, time.monotonic() - started


def _check_rate_limit(stack, exercise) -> str:
    _require_async(exercise.function(stack, "allow"), "allow", "redis.asyncio commands are awaited")
    stack.restart("users")
    limiter = _stats(stack)["rate_limit"]
    if not limiter["enabled"]:
        raise CheckFailed(f"the service does not run your limiter: {limiter['off_reason']}")
    limit, window = limiter["limit"], limiter["window_s"]
    replicas = len(stack.members("users"))
    for attempt in (1, 2):   # a fixed window may start mid-burst once; twice in a row is no accident
        frame, client, elapsed = _burst(stack, limit)
        codes = frame.status.value_counts().to_dict()
        if set(codes) - {200, 429}:
            bad = frame[~frame.status.isin([200, 429])].iloc[0]
            raise CheckFailed(f"{3 * limit} requests of one client answered {codes}; e.g. {bad.status} {bad.error}: "
                              "expected only 200 and 429")
        allowed = codes.get(200, 0)
        if allowed == limit or allowed == 0:
            break
    if allowed == 0:
        raise CheckFailed(f"all {3 * limit} requests of a new client were refused: allow() must return True "
                          f"for the first {limit} requests of a window")
    if allowed == 3 * limit:
        raise CheckFailed(f"{3 * limit} requests at once, all allowed (limit {limit}): allow() must return "
                          "(False, retry_after) once the count is over the limit")
    if allowed != limit:
        per_process = "; that is about limit × replicas: is the count kept per process?" \
            if allowed >= limit * min(replicas, 2) else ""
        raise CheckFailed(f"{3 * limit} concurrent requests of one client got {allowed} × 200, twice, expected "
                          f"exactly {limit}{per_process} Count with one atomic Redis command (INCR) shared by all "
                          "replicas, not a read then a write")
    refused = frame[frame.status == 429]
    waits = pd.to_numeric(refused.retry_after, errors="coerce")
    if waits.isna().any() or not waits.between(1, window).all():
        raise CheckFailed(f"429s carried Retry-After {sorted(set(refused.retry_after))}; the window is {window} s: "
                          "return the seconds left in the window (the key's TTL)")
    if (refused.error != "rate_limited").any():
        raise CheckFailed("a 429 without the JSON body {'error': 'rate_limited', ...}: is something else answering?")
    keys = list(redis_client(stack).scan_iter(match=f"*{client}*", count=1000))
    if not keys:
        raise CheckFailed(f"Redis holds no key naming the client {client!r}: count under f\"ratelimit:{{client}}\"")
    ttls = {key: redis_client(stack).ttl(key) for key in keys}
    if any(ttl == -1 for ttl in ttls.values()):
        raise CheckFailed(f"the counter {next(k for k, t in ttls.items() if t == -1)!r} never expires: "
                          "that client would stay blocked forever — give the key a TTL of window_s")
    other = fire(f"{stack.url('users')}/users?limit=1", 1, {"X-Client-Id": f"other-{uuid.uuid4().hex[:8]}"})
    if other.status.iloc[0] != 200:
        raise CheckFailed(f"a different client was refused ({other.status.iloc[0]}): count per client, "
                          "the key must contain `client`")
    instances = sorted(frame.instance.dropna().unique())
    if _behind_balancer(stack) and len(instances) < 2:
        raise CheckFailed(f"all requests reached {instances}: the check expected the load balancer to spread them")
    return (f"{3 * limit} concurrent requests of one client through {len(instances)} replica(s) "
            f"({', '.join(instances)}) in {elapsed:.2f} s → exactly {limit} allowed, {len(refused)} × 429 with "
            f"Retry-After ≤ {window} s and a JSON body; the counter expires; another client is unaffected")


rate_limit = Exercise(
    name="rate_limit",
    title="Exercise 2 · rate limiter allow()",
    checker=_check_rate_limit,
    hints=[
        "INCR creates the key at 1 or adds 1, atomically, and returns the new count: "
        "the request is allowed while count <= limit.",
        "Send INCR, `EXPIRE key window_s NX` (only the window's first request sets the clock) and TTL in one "
        "MULTI/EXEC: `async with redis.pipeline(transaction=True) as pipe: pipe.incr(key); ...; await pipe.execute()`.",
        "Return `(count <= limit, max(ttl, 1))`: the TTL is how long until the window ends — the Retry-After.",
    ],
    reference="shop.reference.rate_limit",
    handle="lab03.rate_limit",
)
