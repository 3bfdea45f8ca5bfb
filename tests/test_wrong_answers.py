"""Each exercise's check against the wrong answers a learner plausibly writes: the classic mistakes
the notebook's prose names, and others. Every one must be rejected, with the right diagnosis.

A table per exercise: (id, the learner's file, what the check must say). Live checks run on a
real local stack; the checks that need none (pure functions, YAML) run on a workspace alone.
"""

import pytest

from conftest import solved_stack
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import lab01, lab03, lab06
from scalelab.references import solve


def table(rows):
    """pytest params from (id, code, expected) rows."""
    return [pytest.param(code, expected, id=name) for name, code, expected in rows]


class WorkspaceOnly:
    """What a check that needs no running stack sees of one."""

    def __init__(self, workspace):
        self.workspace = workspace


# -- lab 01 · exercise 1: fetch_user -------------------------------------------------------------
SELECT = "SELECT id, email, name, created_at FROM users"
FETCH_USER = [
    ("f-string", f'''
async def fetch_user(conn, user_id):
    row = await conn.fetchrow(f"{SELECT} WHERE id = {{user_id}}")
    return dict(row) if row else None
''', "built by formatting"),
    ("str-concatenation", f'''
async def fetch_user(conn, user_id):
    sql = "{SELECT} WHERE id = "
    sql += str(user_id)
    row = await conn.fetchrow(sql)
    return dict(row) if row else None
''', "built by formatting"),
    ("join", f'''
async def fetch_user(conn, user_id):
    row = await conn.fetchrow(" ".join(["{SELECT} WHERE id =", str(user_id)]))
    return dict(row) if row else None
''', "built by formatting"),
    ("percent-d", f'''
async def fetch_user(conn, user_id):
    row = await conn.fetchrow("{SELECT} WHERE id = %d" % user_id)
    return dict(row) if row else None
''', "built by formatting"),
    ("str-format-via-variable", f'''
TEMPLATE = "{SELECT} WHERE id = {{}}"

async def fetch_user(conn, user_id):
    query = TEMPLATE.format
    row = await conn.fetchrow(query(user_id))
    return dict(row) if row else None
''', "built by formatting"),
    ("too-few-columns", '''
async def fetch_user(conn, user_id):
    row = await conn.fetchrow("SELECT id, email FROM users WHERE id = $1", user_id)
    return dict(row) if row else None
''', r"the service ran your fetch_user and it failed: .*(name|created_at)"),
    ("no-none-for-a-missing-user", f'''
async def fetch_user(conn, user_id):
    return dict(await conn.fetchrow("{SELECT} WHERE id = $1", user_id))
''', r"\(no such user\) answered 500: fetch_user must return None"),
    ("ignores-the-id", f'''
async def fetch_user(conn, user_id):
    row = await conn.fetchrow("{SELECT} ORDER BY id LIMIT 1")
    return dict(row) if row else None
''', r"returned 200 .*expected"),
    ("not-async", f'''
def fetch_user(conn, user_id):
    return None
''', "must be `async def`"),
    ("returns-a-string", f'''
async def fetch_user(conn, user_id):
    row = await conn.fetchrow("{SELECT} WHERE id = $1", user_id)
    return str(dict(row)) if row else None
''', r"the service ran your fetch_user and it failed: .*not a user"),
]

lab1 = solved_stack(1)


@pytest.fixture
def lab1_workspace(lab1):
    yield lab1.workspace
    solve(lab1)


@pytest.mark.parametrize("code, expected", table(FETCH_USER))
def test_fetch_user_check_rejects_a_wrong_answer_saying_what_is_wrong(lab1, lab1_workspace, code, expected):
    (lab1_workspace / "user_queries.py").write_text(code)
    with pytest.raises(CheckFailed, match=expected) as failed:
        lab01.fetch_user.check(lab1)
    assert failed.type is CheckFailed and "Traceback" not in str(failed.value)


def test_fetch_user_stub_is_not_attempted_and_the_reference_passes(lab1, lab1_workspace, capsys):
    (lab1_workspace / "user_queries.py").write_text("async def fetch_user(conn, user_id):\n"
                                                    "    # YOUR CODE HERE\n    raise NotImplementedError()\n")
    with pytest.raises(NotAttempted, match="not attempted yet"):
        lab01.fetch_user.check(lab1)
    solve(lab1)
    lab01.fetch_user.check(lab1)
    assert "✓" in capsys.readouterr().out


# -- lab 01 · exercise 2: pool_size (its rules need no stack) -------------------------------------
POOL = [
    ("ignores-the-reserved-connections", "return 2, max(1, min(db_max_connections // replicas, 4 * cpu_count))",
     r"over max_connections - 8"),
    ("ignores-the-database-budget", "return 2, 4 * cpu_count", r"replicas × \d+ = \d+ connections, over"),
    ("min-equals-max", "b = max(1, min((db_max_connections - 8) // replicas, 4 * cpu_count))\n    return b, b",
     r"at most 2 idle connections"),
    ("too-small-a-pool", "return 1, max(1, min((db_max_connections - 8) // replicas, 2))", r"a pool under 2 per core"),
    ("a-list-not-a-tuple", "return [1, max(1, min((db_max_connections - 8) // replicas, 4 * cpu_count))]",
     r"as two ints"),
    ("a-float-size", "return 2, max(1, min((db_max_connections - 8) / replicas, 4 * cpu_count))", r"as two ints"),
    ("too-many-per-core", "return 2, max(1, min((db_max_connections - 8) // replicas, 16 * cpu_count))",
     r"more than 4 connections per core in one replica's pool"),
    ("divides-by-replicas-minus-one", "return 2, (db_max_connections - 8) // (replicas - 1)",
     r"raised ZeroDivisionError"),
    ("max-below-min", "return 2, 1", r"1 <= min_size <= max_size"),
]


@pytest.mark.parametrize("body, expected", table(POOL))
def test_pool_rules_reject_a_wrong_answer_saying_what_is_wrong(body, expected):
    namespace = {}
    exec(f"def pool_size(cpu_count, db_max_connections, replicas):\n    {body}\n", namespace)
    with pytest.raises(CheckFailed, match=expected):
        lab01._check_rules(namespace["pool_size"])


def test_pool_rules_accept_the_reference():
    from shop.reference.pool import pool_size
    lab01._check_rules(pool_size)


# -- lab 03 · exercise 2: the rate limiter ---------------------------------------------------------
LIMITER = [
    ("expire-without-nx", '''
async def allow(redis, client, limit, window_s):
    key = f"ratelimit:{client}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    return count <= limit, max(ttl, 1)
''', "its window never ends"),
    ("one-key-for-every-client", '''
async def allow(redis, client, limit, window_s):
    key = "ratelimit:all"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    return count <= limit, max(ttl, 1)
''', "every client shares one count"),
    ("get-then-set", '''
async def allow(redis, client, limit, window_s):
    key = f"ratelimit:{client}"
    count = int(await redis.get(key) or 0) + 1
    await redis.set(key, count, ex=window_s, keepttl=False) if count == 1 else await redis.set(key, count, keepttl=True)
    return count <= limit, max(await redis.ttl(key), 1)
''', "concurrent requests read the same count"),
    ("no-expiry", '''
async def allow(redis, client, limit, window_s):
    key = f"ratelimit:{client}"
    count = await redis.incr(key)
    return count <= limit, window_s
''', "never expires"),
    ("off-by-one", '''
async def allow(redis, client, limit, window_s):
    key = f"ratelimit:{client}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    return count < limit, max(ttl, 1)
''', r"expected exactly \d+"),
    ("counts-in-the-replicas-memory", '''
import time
COUNTS = {}

async def allow(redis, client, limit, window_s):
    window = int(time.time() // window_s)
    COUNTS[(client, window)] = COUNTS.get((client, window), 0) + 1
    return COUNTS[(client, window)] <= limit, window_s
''', "each replica counts on its own"),
    ("not-async", '''
def allow(redis, client, limit, window_s):
    return True, 1
''', "must be `async def`"),
]

lab3 = solved_stack(3)


@pytest.fixture
def lab3_workspace(lab3):
    yield lab3.workspace
    solve(lab3)


@pytest.mark.parametrize("code, expected", table(LIMITER))
def test_rate_limit_check_rejects_a_wrong_answer_saying_what_is_wrong(lab3, lab3_workspace, code, expected):
    (lab3_workspace / "rate_limit.py").write_text(code)
    with pytest.raises(CheckFailed, match=expected):
        lab03.rate_limit.check(lab3)
