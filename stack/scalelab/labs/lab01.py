"""Lab 01 — the stateless user service: exercises and their live checks."""

import ast
import inspect
import os
import threading
import time
import uuid

import httpx
import numpy as np
import pandas as pd

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


def _peak_connections(stack, duration: float) -> tuple[int, load.LoadResult]:
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


# -- exercise 3: a bounded avatar cache (a memory leak, found and fixed) ----------------------
MAX_AVATARS = 1000        # what the notebook asks for: at most this many avatars kept
RULE_WARMUP = 2 * MAX_AVATARS
RULE_NAMES = 20_000       # new names the rules send after the warm-up
HOT_EVERY = 10            # ... with one hot name asked again after every HOT_EVERY of them
RULE_GROWTH_LIMIT = 1_000_000   # bytes: a bounded cache holds no more after its warm-up
LIVE_WARMUP, LIVE_NAMES = 1_500, 3_000
LIVE_GROWTH_LIMIT_MB = 10.0     # RSS growth over LIVE_NAMES new names (an unbounded memo: ~40 MB)


def _rule_name(kind: str, i: int) -> str:
    return f"{kind}-{i:06d}-" + "n" * 80   # as long as a real name: a list of names alone shows too


def _check_cache_rules(cached_avatar) -> str:
    """Call the learner's cached_avatar directly, here, with a render that makes a fresh ~1 KB string
    per call: it must cache, keep memory flat over 20,000 new names, keep a hot name, admit new ones."""
    import tracemalloc
    renders = {"total": 0}
    watched = {"hot": 0, "fresh": 0}

    def render(name):
        renders["total"] += 1
        if name in watched:
            watched[name] += 1
        return f"<svg><title>{name}</title>" + "x" * 1000 + "</svg>"

    def call(name):
        try:
            return cached_avatar(name, render)
        except NotImplementedError:
            raise NotAttempted("cached_avatar() still raises NotImplementedError") from None
        except Exception as exc:
            raise CheckFailed(f"cached_avatar({name[:12]!r}…, render) raised {type(exc).__name__}: {exc}") from None

    first, again = call("Ada Lovelace"), call("Ada Lovelace")
    if first != render("Ada Lovelace"):
        raise CheckFailed(f"cached_avatar('Ada Lovelace', render) returned {str(first)[:60]!r}: "
                          "return what render(name) returns")
    renders["total"] -= 1   # that comparison's own render
    if again != first or renders["total"] != 1:
        raise CheckFailed(f"the same name asked twice was rendered {renders['total']} times: remember what "
                          "render(name) returned and answer the second call from memory")
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        for i in range(RULE_WARMUP):
            call(_rule_name("warm", i))
            if i % HOT_EVERY == 0:
                call("hot")
        before = tracemalloc.get_traced_memory()[0]
        for i in range(RULE_NAMES):
            call(_rule_name("flood", i))
            if i % HOT_EVERY == 0:
                call("hot")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        if started:
            tracemalloc.stop()
    if grown > RULE_GROWTH_LIMIT:
        raise CheckFailed(f"after {RULE_WARMUP:,} names, {RULE_NAMES:,} more made memory grow by {grown / 1e6:.1f} MB "
                          "(each render is ~1 KB): your code keeps something of every name (the cache, or a list "
                          f"beside it). Keep at most {MAX_AVATARS:,} entries: when a new one goes in, one goes out, "
                          "and nothing else remembers it")
    call("fresh")
    call("fresh")
    if watched["fresh"] != 1:
        raise CheckFailed(f"after {RULE_NAMES:,} names, a new name asked twice was rendered {watched['fresh']} times: "
                          "the cache stopped taking new names once full. A size check that refuses new entries keeps "
                          "memory flat but stops caching: evict an old entry instead")
    if watched["hot"] != 1:
        raise CheckFailed(f"a name asked after every {HOT_EVERY} others was rendered {watched['hot']} times: the cache "
                          "evicts what is used all the time. Evict the least recently *used* entry (on a hit, move "
                          "it to the end: OrderedDict.move_to_end), not the oldest inserted one")
    recent = [_rule_name("flood", i) for i in range(RULE_NAMES - 100, RULE_NAMES)]
    before_recent = renders["total"]
    for name in reversed(recent):
        call(name)
    if renders["total"] != before_recent:
        raise CheckFailed(f"of the last 100 names, {renders['total'] - before_recent} were rendered again: the cache "
                          f"keeps too few — keep up to {MAX_AVATARS:,}")
    return f"{RULE_NAMES:,} new names: memory +{max(grown, 0) / 1e3:.0f} kB; a hot name rendered once"


def memory(stack, member: str | None = None) -> dict:
    """``GET /debug/memory`` of a user service member: its RSS (and traced bytes while tracing)."""
    base = stack.member_url(member) if member else stack.url("users")
    return expect_status(httpx.get(f"{base}/debug/memory", timeout=10), 200, "GET /debug/memory",
                         " — does this lab's plan set SHOP_DEBUG_MEMORY?").json()


def avatar_paths(prefix: str, count: int) -> list[str]:
    """``count`` paths of ``GET /avatar``, each a name never asked before (``prefix`` + a number)."""
    tag = uuid.uuid4().hex[:6]
    return [f"/avatar?name={prefix}-{tag}-{i}" for i in range(count)]


def send_new_names(stack, count: int, users: int = 16, label: str = "new names") -> load.LoadResult:
    """``count`` requests to GET /avatar, nearly each a new name (Locust picks among 10 × count)."""
    result = load.run(stack.url("users"), avatar_paths(label.replace(" ", "-"), 10 * count), users=users,
                      requests=count, duration=120, label=label)
    if result.failures:
        raise CheckFailed(f"{result.failures} of {result.requests} GET /avatar requests failed: {result.status_counts}")
    return result


def baseline(stack, frames: int = 1) -> dict:
    """``POST /debug/memory/baseline``: the service traces allocations (tracemalloc, ``frames`` frames of
    each one's call stack) and takes the snapshot that ``GET /debug/memory/top`` compares to."""
    return expect_status(httpx.post(f"{stack.url('users')}/debug/memory/baseline", params={"frames": frames},
                                    timeout=30), 200, "POST /debug/memory/baseline").json()


def top_allocations(stack, limit: int = 5, group_by: str = "traceback") -> dict:
    """``GET /debug/memory/top``: the allocation sites that grew most since the baseline."""
    return expect_status(httpx.get(f"{stack.url('users')}/debug/memory/top",
                                   params={"limit": limit, "group_by": group_by}, timeout=60),
                         200, "GET /debug/memory/top").json()


def stop_tracing(stack) -> None:
    """``DELETE /debug/memory/baseline``: tracing off (it slows every allocation)."""
    httpx.delete(f"{stack.url('users')}/debug/memory/baseline", timeout=30)


def rss_growth(stack, warmup: int, count: int) -> tuple[float, float]:
    """(RSS in MB once ``warmup`` new names have filled what fills, MB more after ``count`` more)."""
    send_new_names(stack, warmup, label="warm-up names")
    before = memory(stack)["rss_bytes"]
    send_new_names(stack, count, label="more names")
    return before / 1e6, (memory(stack)["rss_bytes"] - before) / 1e6


def _check_avatar_cache(stack, exercise) -> str:
    cached_avatar = exercise.function(stack, "cached_avatar")
    rules = _check_cache_rules(cached_avatar)
    stack.restart("users")   # the service loads avatar_cache.py from the workspace at start
    base = stack.url("users")
    ada = httpx.get(f"{base}/avatar", params={"name": "Ada Lovelace"}, timeout=10)
    if ada.status_code == 501:
        raise NotAttempted(_said(ada))
    if ada.status_code == 500:
        raise CheckFailed(f"the service ran your cached_avatar and it failed: {_said(ada)}")
    body = expect_status(ada, 200, "GET /avatar?name=Ada Lovelace").json()
    if not str(body.get("svg", "")).startswith("<svg"):
        raise CheckFailed(f"GET /avatar answered {str(body)[:120]}: the SVG that render(name) returns is expected")
    rss_mb, grown_mb = rss_growth(stack, LIVE_WARMUP, LIVE_NAMES)
    if grown_mb > LIVE_GROWTH_LIMIT_MB:
        raise CheckFailed(f"the service's RSS grew by {grown_mb:.1f} MB over {LIVE_NAMES:,} requests for new names "
                          f"(after {LIVE_WARMUP:,} to fill the cache): it still keeps every name. Is the file in the "
                          "workspace the one you tested? (stack.logs('users-1'))")
    return (f"rules: {rules}; the service (RSS {rss_mb:.0f} MB after {LIVE_WARMUP:,} names): {LIVE_NAMES:,} more "
            f"→ {grown_mb:+.1f} MB (served by {ada.headers.get('x-instance')})")


avatar_cache = Exercise(
    name="avatar_cache",
    title="Exercise 3 · cached_avatar",
    checker=_check_avatar_cache,
    hints=[
        f"A dict keyed by name remembers; it must also forget. Keep at most {MAX_AVATARS:,} entries: when a new "
        "one would make it too many, remove one.",
        "Which one to remove: the least recently used. collections.OrderedDict keeps insertion order; "
        "move_to_end(name) on a hit makes order = recency, popitem(last=False) removes the oldest.",
        "Or functools.lru_cache(maxsize=1000) on a helper `_render(name, render)` that returns render(name). "
        "maxsize=None never evicts: that is the leak again.",
    ],
    reference="shop.reference.avatar_cache",
    handle="lab01.avatar_cache",
)


# -- measuring RSS under load --------------------------------------------------------------------
def rss_under_load(stack, requests: int, users: int = 16, label: str = "load",
                   every_s: float = 0.1) -> tuple[load.LoadResult, pd.DataFrame]:
    """``requests`` GET /avatar, each for a new name, while the service's RSS is read every ``every_s``
    (over HTTP, GET /debug/memory: measured inside the member, the same on every runtime). Returns
    the load and the samples: t_s (seconds since the load's first request), rss_mb."""
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    base = stack.url("users")

    def sample():
        with httpx.Client(base_url=base, timeout=5) as client:
            while not done.is_set():
                try:
                    samples.append((time.time(), client.get("/debug/memory").json()["rss_bytes"]))
                except (httpx.HTTPError, ValueError, KeyError):
                    pass          # a sample lost under load: the series has many
                done.wait(every_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = load.run(base, avatar_paths(label.replace(" ", "-"), 10 * requests), users=users,
                          requests=requests, duration=300, label=label)
    finally:
        done.set()
        sampler.join(timeout=10)
    if result.failures:
        raise CheckFailed(f"{result.failures} of {result.requests} GET /avatar requests failed: {result.status_counts}")
    start = result.started_at or (samples[0][0] if samples else time.time())
    end = result.ended_at or time.time()
    frame = pd.DataFrame([(t - start, rss / 1e6) for t, rss in samples if start <= t <= end],
                         columns=["t_s", "rss_mb"])
    return result, frame


def growth_per_1000(samples: pd.DataFrame, result: load.LoadResult, skip_s: float = 1.0) -> float:
    """RSS growth in MB per 1000 requests: the median slope over every pair of samples after the
    first ``skip_s`` seconds (Theil–Sen: one slow or noisy sample moves it little), divided by the
    load's throughput. A short load (a fast machine: 6,000 requests in under 2 s) skips a quarter of
    its span instead, so the fit keeps enough samples."""
    span = float(samples.t_s.max()) if len(samples) else 0.0
    kept = samples[samples.t_s >= min(skip_s, span / 4)]
    t, mb = kept.t_s.to_numpy(), kept.rss_mb.to_numpy()
    if len(t) < 4 or result.rps <= 0:
        raise ValueError(f"too few RSS samples to fit a slope ({len(t)}, {result.rps:.0f} rps)")
    i, j = np.triu_indices(len(t), k=1)
    spread = t[j] - t[i]
    slopes = (mb[j] - mb[i])[spread > 0.5] / spread[spread > 0.5]   # MB per second, pairs ≥ 0.5 s apart
    return float(np.median(slopes) / result.rps * 1000)
