"""Lab 03 — Redis: a cache-aside user cache and a rate limiter shared by every replica."""

import asyncio
import inspect
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import httpx
import pandas as pd
import redis

from scalelab import aio, db
from scalelab.exercise import CheckFailed, Exercise, NotAttempted, expect_status

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


def redis_errors(stack) -> int:
    """Redis commands the rate limiter of every users replica saw fail (each one let a request
    through: the limiter fails open)."""
    return sum(httpx.get(f"{stack.member_url(member)}/stats", timeout=10).json()["rate_limit"]["redis_errors"]
               for member in stack.members("users"))


def bursts(stack, path: str, names: list[str], each: int, window: float,
           tries: int = 4) -> tuple[dict[str, pd.DataFrame], float, int]:
    """Clients named after ``names`` (fresh ids) each send ``each`` GETs of ``path`` through the
    stack's entry at once, all at the same moment: one frame per client id, the seconds the slowest
    burst took, and the Redis errors the limiters met meanwhile. No verdict on bursts longer than
    one window (they may have met two of its windows: two budgets) nor on bursts during which Redis
    failed to answer in time (the limiter let those requests through: it fails open): they all
    run again with fresh ids, ``tries`` times at most; the last bursts are returned whatever happened."""
    url = f"{stack.url('users')}{path}"

    def timed(client: str) -> tuple[pd.DataFrame, float]:
        started = time.monotonic()
        frame = fire(url, each, {"X-Client-Id": client}, concurrency=each)
        return frame, time.monotonic() - started

    for _ in range(tries):
        clients = [f"{name}-{uuid.uuid4().hex[:6]}" for name in names]
        errors_before = redis_errors(stack)
        with ThreadPoolExecutor(len(clients)) as pool:
            results = list(pool.map(timed, clients))
        span = max(seconds for _, seconds in results)
        failed_open = redis_errors(stack) - errors_before
        if span < window and failed_open == 0:
            break
    return {client: frame for client, (frame, _) in zip(clients, results, strict=True)}, span, failed_open


def signed_up(api: httpx.Client, name: str) -> tuple[dict, dict]:
    """Create a user with a password, log in: ``(user, headers)`` — its Bearer token (lab 02)."""
    password = uuid.uuid4().hex
    email = f"{name.split()[0].lower()}-{uuid.uuid4().hex[:8]}@example.com"
    created = api.post("/users", json={"email": email, "name": name, "password": password})
    expect_status(created, 201, "POST /users", ": is the stack healthy? (stack.status(), stack.logs('users-1'))")
    token = expect_status(api.post("/auth/token", json={"email": email, "password": password}), 200, "POST /auth/token")
    return created.json(), {"Authorization": f"Bearer {token.json()['access_token']}"}


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
        user, token = signed_up(api, "Cache Check")
        key = f"user:{user['id']}"
        r.delete(key)
        reset_db_reads(stack)
        reads = [api.get(f"/users/{user['id']}") for _ in range(6)]
        for got in reads:
            if got.status_code == 501:
                raise NotAttempted(got.json()["detail"])
            if got.status_code == 500:
                raise CheckFailed(f"the service ran your get_user and it failed: {got.json().get('detail')}")
            expect_status(got, 200, f"GET /users/{user['id']}")
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
            json.loads(cast(str, r.get(key)))   # decode_responses: a str (None, if it expired since, raises TypeError)
        except (TypeError, ValueError):
            raise CheckFailed(f"{key!r} does not hold JSON: store json.dumps(user, default=str)") from None
        if n_db != 1:
            raise CheckFailed(f"{len(reads)} GETs of one user cost {n_db} database reads, expected 1 (the first miss)")

        renamed = api.patch(f"/users/{user['id']}", json={"name": "Cache Check Renamed"}, headers=token)
        expect_status(renamed, 200, f"PATCH /users/{user['id']}")
        after = [api.get(f"/users/{user['id']}").json().get("name") for _ in range(3)]
        if any(name != "Cache Check Renamed" for name in after):
            raise CheckFailed(f"after PATCH the next reads returned names {after}: a stale read — "
                              "forget_user must delete the cached copy")
        deleted = api.delete(f"/users/{user['id']}", headers=token)
        gone = [api.get(f"/users/{user['id']}").status_code for _ in range(3)]
        if deleted.status_code != 204 or any(code != 404 for code in gone):
            raise CheckFailed(f"after DELETE the reads answered {gone}: "
                              "the deleted user is still served from the cache")

        other, _ = signed_up(api, "Redis Down")
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
def _shared_by_every_client(url: str, limit: int) -> bool:
    """True when a new client's first request is refused right after another client was refused,
    each time that happened (three tries; a window turning over in between gives no verdict)."""
    conclusive = 0
    for _ in range(3):
        if _sequential([url], limit + 1, f"check-{uuid.uuid4().hex[:8]}").status.iloc[-1] != 429:
            continue            # the window turned over before the first client ran out: no verdict
        if _sequential([url], 1, f"check-{uuid.uuid4().hex[:8]}").status.iloc[0] != 429:
            return False
        conclusive += 1
    return conclusive > 0


def _window_ends_for_a_busy_client(url: str, limit: int, window: int) -> bool:
    """A client over its limit keeps sending, a request every quarter window: is one allowed again
    within 2.5 windows? (A TTL set again by every request never lets its window end.)"""
    client = f"check-{uuid.uuid4().hex[:8]}"
    _sequential([url], limit + 1, client)
    deadline = time.monotonic() + 2.5 * window
    while time.monotonic() < deadline:
        time.sleep(window / 4)
        if _sequential([url], 1, client).status.iloc[0] == 200:
            return True
    return False


def _sequential(urls: list[str], total: int, client: str) -> pd.DataFrame:
    """``total`` requests of ``client``, one after another, cycling over ``urls``."""
    rows = []
    with httpx.Client(timeout=10, headers={"X-Client-Id": client}) as http:
        for i in range(total):
            r = http.get(f"{urls[i % len(urls)]}/users?limit=1")
            rows.append({"status": r.status_code, "instance": r.headers.get("x-instance"),
                         "retry_after": r.headers.get("retry-after")})
    return pd.DataFrame(rows)


def _failed_open(stack) -> tuple[int, str | None]:
    """Limiter calls to Redis that failed so far, every replica, and the last error: each let its
    request through (fail open, by design), so a probe that saw one proves nothing about the count."""
    stats = [httpx.get(f"{stack.member_url(m)}/stats", timeout=10).json()["rate_limit"]
             for m in stack.members("users")]
    return sum(s["redis_errors"] for s in stats), next((s["last_error"] for s in stats if s["last_error"]), None)


def _allowed(stack, run, limit: int) -> tuple[int, pd.DataFrame, str]:
    """Run a probe with a fresh client; again (twice at most) if it missed ``limit``: a window
    may have turned over mid-probe (a busy machine, a window aligned to the clock), or a Redis
    call timed out and let a request through, but not three times in a row."""
    for _ in range(3):
        client = f"check-{uuid.uuid4().hex[:8]}"
        errors_before, _ = _failed_open(stack)
        frame = run(client)
        codes = frame.status.value_counts().to_dict()
        if set(codes) - {200, 429}:
            bad = frame[~frame.status.isin([200, 429])].iloc[0]
            raise CheckFailed(f"requests of one client answered {codes}, e.g. {bad.status}: expected only 200 and 429 "
                              "(stack.logs('users-1') shows what failed)")
        allowed = codes.get(200, 0)
        if allowed == limit:
            break
    errors_after, last_error = _failed_open(stack)
    if allowed != limit and errors_after > errors_before:
        raise CheckFailed(f"{errors_after - errors_before} calls of allow() to Redis failed during the probe (last: "
                          f"{last_error}) and let their requests through (fail open): a timeout means a busy machine, "
                          "run the check again; any other error is allow()'s to fix")
    return allowed, frame, client


def _check_rate_limit(stack, exercise) -> str:
    _require_async(exercise.function(stack, "allow"), "allow", "redis.asyncio commands are awaited")
    stack.restart("users")
    limiter = _stats(stack)["rate_limit"]
    if not limiter["enabled"]:
        raise CheckFailed(f"the service does not run your limiter: {limiter['off_reason']}")
    limit, window = limiter["limit"], limiter["window_s"]
    members = [stack.member_url(m) for m in stack.members("users")]

    # 1. One replica, one request at a time: does allow() count and refuse at all?
    total = limit + 5
    allowed, _, _ = _allowed(stack, lambda c: _sequential(members[:1], total, c), limit)
    if allowed == 0:
        raise CheckFailed(f"all {total} requests of a new client were refused: allow() must return True "
                          f"for the first {limit} requests of a window")
    if allowed == total:
        raise CheckFailed(f"{total} requests of one client, one after another, all allowed (limit {limit}): "
                          "allow() must return (False, retry_after) once the count is over the limit")
    if allowed != limit:
        raise CheckFailed(f"{total} requests of one client, one after another: {allowed} allowed, expected exactly "
                          f"{limit} (allowed while count <= limit, the count including this request)")

    # 1b. Per client: right after one client used up its limit, another's first request passes.
    if _shared_by_every_client(members[0], limit):
        raise CheckFailed(f"right after one client used up its {limit} requests, a new client's FIRST request was "
                          "refused: every client shares one count — count per client, the key must contain `client`")

    # 2. Every replica, one request at a time: is the count shared? (Per-replica counters
    #    would allow them all: each replica sees fewer than the limit.)
    if len(members) > 1:
        total = limit + 10
        allowed, frame, _ = _allowed(stack, lambda c: _sequential(members, total, c), limit)
        if allowed > limit:
            raise CheckFailed(f"{total} requests of one client, one after another, spread over {len(members)} "
                              f"replicas: {allowed} allowed, expected {limit} — each replica counts on its own; keep "
                              "the count in Redis, where every replica sees the same number")
        if allowed < limit:
            raise CheckFailed(f"{total} requests of a new client, one after another, spread over {len(members)} "
                              f"replicas: only {allowed} allowed, expected {limit} — does the count include other "
                              "requests than this client's in this window?")

    # 3. Through the entry point, all at once: is the count atomic?
    total = 3 * limit
    started = time.monotonic()
    allowed, frame, client = _allowed(
        stack, lambda c: fire(f"{stack.url('users')}/users?limit=1", total, {"X-Client-Id": c},
                              concurrency=total), limit)
    elapsed = time.monotonic() - started
    if allowed != limit:
        raise CheckFailed(f"{total} concurrent requests of one client: {allowed} allowed, expected {limit} — "
                          "concurrent requests read the same count: count with one atomic command (INCR, or "
                          "MULTI/EXEC, or a Lua script), never a GET followed by a SET")
    refused = frame[frame.status == 429]
    waits = pd.to_numeric(refused.retry_after, errors="coerce")
    if waits.isna().any() or not waits.between(1, window).all():
        raise CheckFailed(f"429s carried Retry-After {sorted(set(refused.retry_after))}; the window is {window} s: "
                          "return the seconds left in the window (the key's TTL)")
    if (refused.error != "rate_limited").any():
        raise CheckFailed("a 429 without the JSON body {'error': 'rate_limited', ...}: is something else answering?")
    r = redis_client(stack)
    for _ in range(3):   # one request of a new client, then its key at once (the burst's may have expired)
        client = f"check-{uuid.uuid4().hex[:8]}"
        fire(f"{stack.url('users')}/users?limit=1", 1, {"X-Client-Id": client})
        if keys := list(r.scan_iter(match=f"*{client}*", count=1000)):
            break
    if not keys:
        raise CheckFailed(f"Redis holds no key naming the client {client!r}: count under f\"ratelimit:{{client}}\"")
    if never := [key for key in keys if r.ttl(key) == -1]:
        raise CheckFailed(f"the counter {never[0]!r} never expires: that client would stay blocked forever — "
                          "give the key a TTL of window_s")
    if not _window_ends_for_a_busy_client(members[0], limit, window):
        raise CheckFailed(f"a client over its limit that kept sending (one request every {window / 4:g} s) was still "
                          f"refused {2.5 * window:g} s later, though the window is {window} s: each request set the "
                          "key's TTL again, so its window never ends — start the clock only with the window's first "
                          "request (EXPIRE key window_s NX)")
    other = fire(f"{stack.url('users')}/users?limit=1", 1, {"X-Client-Id": f"other-{uuid.uuid4().hex[:8]}"})
    if other.status.iloc[0] != 200:
        raise CheckFailed(f"a different client was refused ({other.status.iloc[0]}): count per client, "
                          "the key must contain `client`")
    instances = sorted(frame.instance.dropna().unique())
    if _behind_balancer(stack) and len(instances) < 2:
        raise CheckFailed(f"all requests reached {instances}: the check expected the load balancer to spread them")
    return (f"{total} concurrent requests of one client through {len(instances)} replica(s) "
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
