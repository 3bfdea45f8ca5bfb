"""Each exercise's check against the wrong answers a learner plausibly writes: the classic mistakes
the notebook's prose names, and others. Every one must be rejected, with the right diagnosis.

A table per exercise: (id, the learner's file, what the check must say). Live checks run on a
real local stack (labs 02, 04, 05 and 07 one at a time: a class each, its stack up for that class
only); the checks that need none (pure functions, YAML, the steps a check runs before it touches a
service) run on a workspace alone, with promtool on this host, or with another lab's Redis.
"""

import pytest

from conftest import solved_stack
from test_lab05_orders import CHECK_THEN_INSERT
from scalelab import Stack
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import lab01, lab02, lab03, lab04, lab05, lab06, lab07, lab08
from scalelab.references import solve


def table(rows):
    """pytest params from (id, code, expected) rows."""
    return [pytest.param(code, expected, id=name) for name, code, expected in rows]


def rejected(stack, exercise, code: str, expected: str) -> CheckFailed:
    """Write ``code`` as the learner's file of ``exercise``, run its check on the live ``stack``:
    it must fail with ``expected`` in one message. The reference solutions are put back after."""
    try:
        (stack.workspace / f"{exercise.name}.py").write_text(code)
        with pytest.raises(CheckFailed, match=expected) as failed:
            exercise.check(stack)
    finally:
        solve(stack)
    assert failed.type is CheckFailed and "Traceback" not in str(failed.value)
    return failed.value


def reference_text(relative: str) -> str:
    """A reference solution's file, by its path in the repository."""
    from scalelab.paths import REPO
    return (REPO / relative).read_text()


def edited(relative: str, old: str, new: str, count: int = 1) -> str:
    """The reference file with ``old`` replaced by ``new`` (``count`` times): one wrong answer."""
    text = reference_text(relative)
    assert text.count(old) >= count, f"{relative} no longer holds {old!r}"
    return text.replace(old, new, count)


def defined(signature: str, body: str, prelude: str = ""):
    """The learner's function from its signature and body (a rules check calls it directly)."""
    namespace = {}
    exec(f"{prelude}def {signature}:\n    {body}\n", namespace)
    return namespace[signature.split("(")[0]]


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
''', r"\(no such user\) answered 500 .*: fetch_user must return None"),
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


@pytest.mark.parametrize("code, expected", table(FETCH_USER))
def test_fetch_user_check_rejects_a_wrong_answer_saying_what_is_wrong(lab1, code, expected):
    rejected(lab1, lab01.fetch_user, code, expected)


def test_fetch_user_stub_is_not_attempted_and_the_reference_passes(lab1, capsys):
    (lab1.workspace / "user_queries.py").write_text("async def fetch_user(conn, user_id):\n"
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
    with pytest.raises(CheckFailed, match=expected):
        lab01._check_rules(defined("pool_size(cpu_count, db_max_connections, replicas)", body))


def test_pool_and_token_rules_accept_the_references():
    from shop.reference.pool import pool_size
    from shop.reference.tokens import verify_token
    lab01._check_rules(pool_size)
    lab02._check_rules(verify_token)


# -- lab 01 · exercise 3: cached_avatar (its rules need no stack; the live part runs on lab1) ---------
AVATAR_CACHE = [
    ("the-leaky-memo", """
_rendered = {}
def cached_avatar(name, render):
    if name not in _rendered:
        _rendered[name] = render(name)
    return _rendered[name]
""", r"memory grow by \d+\.\d MB .*keeps something of every name"),
    ("lru-cache-that-never-evicts", """
from functools import lru_cache
@lru_cache(maxsize=None)
def _cached(name, render):
    return render(name)
def cached_avatar(name, render):
    return _cached(name, render)
""", r"memory grow by"),
    ("a-size-check-that-never-removes", """
_rendered = {}
def cached_avatar(name, render):
    if name in _rendered:
        return _rendered[name]
    svg = render(name)
    if len(_rendered) < 1000:
        _rendered[name] = svg
    return svg
""", r"stopped taking new names once full"),
    ("bounded-but-a-list-of-every-name-beside-it", """
from collections import OrderedDict
_rendered, seen = OrderedDict(), []
def cached_avatar(name, render):
    seen.append(name)
    if name in _rendered:
        _rendered.move_to_end(name)
        return _rendered[name]
    svg = _rendered[name] = render(name)
    if len(_rendered) > 1000:
        _rendered.popitem(last=False)
    return svg
""", r"memory grow by"),
    ("fifo-evicts-the-hot-name", """
_rendered = {}
def cached_avatar(name, render):
    if name in _rendered:
        return _rendered[name]
    svg = _rendered[name] = render(name)
    if len(_rendered) > 1000:
        del _rendered[next(iter(_rendered))]
    return svg
""", r"least recently \*used\*"),
    ("clears-everything-when-full", """
_rendered = {}
def cached_avatar(name, render):
    if name not in _rendered:
        if len(_rendered) >= 1000:
            _rendered.clear()
        _rendered[name] = render(name)
    return _rendered[name]
""", r"least recently \*used\*"),
    ("too-big-a-bound", """
from functools import lru_cache
@lru_cache(maxsize=5000)
def _cached(name, render):
    return render(name)
def cached_avatar(name, render):
    return _cached(name, render)
""", r"Keep at most 1,000 entries"),
    ("too-small-a-bound", """
from functools import lru_cache
@lru_cache(maxsize=50)
def _cached(name, render):
    return render(name)
def cached_avatar(name, render):
    return _cached(name, render)
""", r"keeps too few"),
    ("no-cache-at-all", """
def cached_avatar(name, render):
    return render(name)
""", r"rendered 2 times: remember"),
    ("returns-the-name", """
def cached_avatar(name, render):
    return name
""", r"return what render\(name\) returns"),
]


@pytest.mark.parametrize("code, expected", table(AVATAR_CACHE))
def test_avatar_cache_rules_reject_a_wrong_answer_saying_what_is_wrong(code, expected):
    namespace: dict = {}
    exec(code, namespace)
    with pytest.raises(CheckFailed, match=expected):
        lab01._check_cache_rules(namespace["cached_avatar"])


def test_avatar_cache_rules_accept_the_reference_and_an_lru_cache_of_1000():
    from shop.reference.avatar_cache import cached_avatar
    lab01._check_cache_rules(cached_avatar)
    namespace: dict = {}
    exec("from functools import lru_cache\n@lru_cache(maxsize=1000)\ndef _c(name, render):\n    return render(name)\n"
         "def cached_avatar(name, render):\n    return _c(name, render)\n", namespace)
    lab01._check_cache_rules(namespace["cached_avatar"])


def test_avatar_cache_stub_is_not_attempted_and_the_reference_passes(lab1, capsys):
    (lab1.workspace / "avatar_cache.py").write_text("def cached_avatar(name, render):\n"
                                                    "    # YOUR CODE HERE\n    raise NotImplementedError()\n")
    with pytest.raises(NotAttempted, match="not attempted yet"):
        lab01.avatar_cache.check(lab1)
    solve(lab1)
    lab01.avatar_cache.check(lab1)
    assert "✓" in capsys.readouterr().out


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


@pytest.mark.parametrize("code, expected", table(LIMITER))
def test_rate_limit_check_rejects_a_wrong_answer_saying_what_is_wrong(lab3, code, expected):
    rejected(lab3, lab03.rate_limit, code, expected)


# -- lab 06 · exercise 1: the Deployment and Service (checked before anything runs) ----------------
def _reference_yaml() -> str:
    return reference_text("stack/shop/reference/deployment.yaml")


def _changed(old: str, new: str, count: int = 1) -> str:
    return edited("stack/shop/reference/deployment.yaml", old, new, count)


DEPLOYMENT = [
    ("readiness-on-health", lambda: _changed("httpGet: {path: /ready, port: http}", "httpGet: {path: /health, port: http}"),
     r"readinessProbe path is '/health'"),
    ("liveness-on-ready", lambda: _changed("httpGet: {path: /health, port: http}", "httpGet: {path: /ready, port: http}"),
     r"livenessProbe path is '/ready'"),
    ("latest-tag", lambda: _changed("image: scalelab/shop:dev", "image: scalelab/shop:latest"), r"never :latest"),
    ("no-cpu-request", lambda: _changed("requests: {cpu: 200m, memory: 128Mi}", "requests: {memory: 128Mi}"),
     r"resources.requests is"),
    ("service-selects-other-pods", lambda: _changed(
        "    app.kubernetes.io/name: users            # the same label", "    app.kubernetes.io/name: user            # the same label"),
     r"the Service selects"),
    ("wrong-container-port", lambda: _changed("containerPort: 8000", "containerPort: 8080"), r"the container's ports are"),
    ("no-service", lambda: _reference_yaml().split("\n---\n")[0], r"write one Deployment and one Service"),
    ("a-typo-the-schema-refuses", lambda: _changed("  replicas: 2", "  replica: 2"), r"schema rejects deployment.yaml"),
    ("always-pull", lambda: _changed("imagePullPolicy: IfNotPresent", "imagePullPolicy: Always"),
     r"imagePullPolicy is 'Always'"),
    ("selector-does-not-match-the-pods", lambda: _changed(
        "      app.kubernetes.io/name: users          # the pods", "      app.kubernetes.io/name: shop          # the pods"),
     r"does not match the pod template's labels"),
]


@pytest.mark.parametrize("make, expected", table(DEPLOYMENT))
def test_deployment_check_rejects_a_wrong_manifest_saying_what_is_wrong(tmp_path, make, expected):
    (tmp_path / "deployment.yaml").write_text(make())
    with pytest.raises(CheckFailed, match=expected) as failed:
        lab06.deployment.check(WorkspaceOnly(tmp_path))
    assert failed.type is CheckFailed


# -- lab 06 · exercise 2: desired_replicas (its case table runs before any load) --------------------
HPA = [
    ("round-not-ceil", "d = c if m is None else round(c * m / t)\n    return max(mn, min(mx, d))",
     r"returned 3, expected 4: .*ratio 1.12"),
    ("no-tolerance", "import math\n    d = c if m is None else math.ceil(c * m / t)\n    return max(mn, min(mx, d))",
     r"returned 4, expected 3: .*inside the 0.1 tolerance"),
    ("no-upper-clamp", "import math\n    if m is None: return c\n    r = m / t\n    d = c if abs(r - 1) <= tolerance else "
     "math.ceil(c * r)\n    return max(mn, d)", r"clamped to max_replicas"),
    ("crashes-without-a-metric", "import math\n    r = m / t\n    d = c if abs(r - 1) <= tolerance else math.ceil(c * r)\n"
     "    return max(mn, min(mx, d))", r"raised TypeError: .*no metric yet"),
    ("a-float-count", "if m is None: return c\n    r = m / t\n    d = c if abs(r - 1) <= tolerance else c * r\n"
     "    return max(mn, min(mx, d))", r"a replica count is an int"),
    ("no-lower-clamp", "import math\n    if m is None: return c\n    r = m / t\n    d = c if abs(r - 1) <= tolerance else "
     "math.ceil(c * r)\n    return min(mx, d)", r"clamped to min_replicas"),
    ("ratio-upside-down", "import math\n    if m is None: return c\n    r = t / m if m else 0\n    d = c if abs(r - 1) <= "
     "tolerance else math.ceil(c * r)\n    return max(mn, min(mx, d))", r"one replica at twice the target"),
    ("scales-up-from-zero", "import math\n    if m is None: return c\n    r = m / t\n    d = c if abs(r - 1) <= tolerance "
     "else math.ceil(c * r)\n    return max(mn, min(mx, d), 1)", r"scaled to 0 by hand"),
    ("ignores-the-tolerance-passed-in", "import math\n    if m is None or c <= 0: return c\n    r = m / t\n    d = c if "
     "abs(r - 1) <= 0.1 else math.ceil(c * r)\n    return max(mn, min(mx, d))", r"a wider tolerance"),
]


@pytest.mark.parametrize("body, expected", table(HPA))
def test_hpa_check_rejects_a_wrong_formula_on_its_case_table(tmp_path, body, expected):
    (tmp_path / "hpa.py").write_text("def desired_replicas(c, m, t, tolerance=0.1, min_replicas=1, max_replicas=10):\n"
                                     "    mn, mx = min_replicas, max_replicas\n"
                                     f"    {body}\n")
    with pytest.raises(CheckFailed, match=expected):
        lab06.hpa.check(WorkspaceOnly(tmp_path))


# -- lab 06 · exercise 3: the canary's gate (its case table runs before any rollout) ------------------
GATE = [
    ("counts-not-rates", 'return "hold" if canary.requests < 50 else "rollback" if canary.errors > stable.errors '
     'else "promote"', r"returned 'promote', expected 'rollback': .*compare rates"),
    ("no-baseline", 'return "hold" if canary.requests < 50 else "rollback" if canary.error_rate > 0.02 else "promote"',
     r"returned 'rollback', expected 'promote': .*flaky for both"),
    ("zero-tolerance", 'return "hold" if canary.requests < 50 else "rollback" if canary.errors else "promote"',
     r"returned 'rollback', expected 'promote': .*1 error in 200"),
    ("no-minimum", 'return "rollback" if canary.error_rate > stable.error_rate + 0.02 else "promote"',
     r"returned 'rollback', expected 'hold': 20 canary requests"),
    ("minimum-exclusive", 'return "hold" if canary.requests <= 50 else "rollback" if canary.error_rate > '
     'stable.error_rate + 0.02 else "promote"', r"returned 'hold', expected 'rollback': exactly 50"),
    ("always-promote", 'return "promote"', r"returned 'promote', expected 'hold'"),
    ("always-hold", 'return "hold"', r"returned 'hold', expected 'promote'"),
    ("a-boolean", 'return canary.error_rate <= stable.error_rate + 0.02', r"returned True: a decision is one of"),
    ("a-capital", 'return "Hold" if canary.requests < 50 else "Promote"', r"returned 'Promote': a decision is one of"),
    ("own-division", 'rate = canary.errors / canary.requests\n    if canary.requests < 50:\n        return "hold"\n'
     '    return "rollback" if rate > stable.error_rate + 0.02 else "promote"',
     r"canary=0/0 errors \(0.0%\)\) raised ZeroDivisionError"),
]


@pytest.mark.parametrize("body, expected", table(GATE))
def test_canary_gate_check_rejects_a_wrong_rule_on_its_case_table(tmp_path, body, expected):
    (tmp_path / "canary_gate.py").write_text(f"def gate(stable, canary):\n    {body}\n")
    with pytest.raises(CheckFailed, match=expected) as failed:
        lab06.canary_gate.check(WorkspaceOnly(tmp_path))
    assert failed.type is CheckFailed and "Traceback" not in str(failed.value)


# -- lab 02 · exercise 2: verify_token (its token rules run before any replica does) ---------------
TOKENS = [
    ("signature-not-verified", 'return jwt.decode(token, options={"verify_signature": False})',
     r"accepted a token payload changed after signing"),
    ("expiry-not-required", 'return jwt.decode(token, secret, algorithms=["HS256"])',
     r"accepted a token without an expiry"),
    ("expiry-not-checked", 'return jwt.decode(token, secret, algorithms=["HS256"], '
     'options={"verify_exp": False, "require": ["exp", "iat", "sub"]})', r"accepted a token expired a minute ago"),
    ("sub-not-required", 'return jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})',
     r"accepted a token naming no user"),
    ("swallows-the-error", 'try:\n        return jwt.decode(token, secret, algorithms=["HS256"], '
     'options={"require": ["exp", "iat", "sub"]})\n    except jwt.InvalidTokenError:\n        return None',
     r"accepted a token .* and returned None: it must raise jwt.InvalidTokenError"),
    ("raises-its-own-error", 'try:\n        return jwt.decode(token, secret, algorithms=["HS256"], '
     'options={"require": ["exp", "iat", "sub"]})\n    except jwt.InvalidTokenError:\n        raise ValueError("bad token")',
     r"verify_token raised ValueError: raise jwt.InvalidTokenError"),
    ("returns-the-token", 'jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "iat", "sub"]})\n'
     '    return token', r"return the token's claims as a dict"),
    ("reads-the-payload-without-the-signature", 'import base64, json\n    payload = token.split(".")[1]\n'
     '    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))',
     r"accepted a token payload changed after signing"),
]


@pytest.mark.parametrize("body, expected", table(TOKENS))
def test_token_rules_reject_a_wrong_verifier_saying_what_is_wrong(body, expected):
    with pytest.raises(CheckFailed, match=expected):
        lab02._check_rules(defined("verify_token(token, secret)", body, prelude="import jwt\n\n"))


# -- lab 03 · exercise 1: cache-aside --------------------------------------------------------------
def cache(get_user: str, forget_user: str = "    await redis.delete(user_key(user_id))") -> str:
    return ("import json\n\n\ndef user_key(user_id):\n    return f\"user:{user_id}\"\n\n\n"
            f"async def get_user(redis, user_id, load_from_db, ttl_s):\n{get_user}\n\n\n"
            f"async def forget_user(redis, user_id):\n{forget_user}\n")


CACHED_READ = '''    cached = await redis.get(user_key(user_id))
    if cached is not None:
        return json.loads(cached)
    user = await load_from_db(user_id)
'''
USER_CACHE = [
    ("never-reads-the-cache", cache('''    user = await load_from_db(user_id)
    if user is not None:
        await redis.set(user_key(user_id), json.dumps(user, default=str), ex=ttl_s)
    return user'''), r"every read still goes to the database"),
    ("no-ttl", cache(CACHED_READ + '''    if user is not None:
        await redis.set(user_key(user_id), json.dumps(user, default=str))
    return user'''), r"has no expiry"),
    ("a-ttl-of-its-own", cache(CACHED_READ + '''    if user is not None:
        await redis.set(user_key(user_id), json.dumps(user, default=str), ex=3600)
    return user'''), r"expires in \d+ s; the service's TTL is \d+ s"),
    ("never-invalidates", cache(CACHED_READ + '''    if user is not None:
        await redis.set(user_key(user_id), json.dumps(user, default=str), ex=ttl_s)
    return user''', forget_user="    return None"), r"a stale read — forget_user must delete"),
    ("stores-repr-not-json", cache('''    cached = await redis.get(user_key(user_id))
    if cached is not None:
        return eval(cached, {"datetime": __import__("datetime")})
    user = await load_from_db(user_id)
    if user is not None:
        await redis.set(user_key(user_id), repr(user), ex=ttl_s)
    return user'''), r"(does not hold JSON|ran your get_user and it failed)"),
    ("another-key-than-user-key", cache(CACHED_READ.replace("user_key(user_id)", "f'u:{user_id}'") + '''    if user is not None:
        await redis.set(f"u:{user_id}", json.dumps(user, default=str), ex=ttl_s)
    return user'''), r"Redis holds nothing under 'user:\d+'"),
    ("swallows-redis-errors-as-a-miss-of-none", cache('''    try:
        cached = await redis.get(user_key(user_id))
    except Exception:
        return None
    if cached is not None:
        return json.loads(cached)
    user = await load_from_db(user_id)
    if user is not None:
        await redis.set(user_key(user_id), json.dumps(user, default=str), ex=ttl_s)
    return user'''), r"with Redis down GET /users/\d+ answered 404"),
]


@pytest.mark.parametrize("code, expected", table(USER_CACHE))
def test_user_cache_check_rejects_a_wrong_answer_saying_what_is_wrong(lab3, code, expected):
    rejected(lab3, lab03.user_cache, code, expected)


# -- the other labs' exercises: helpers for a learner's file that is not a .py, and for checks that
#    stop before they need a running service -------------------------------------------------------
def rejected_file(stack, exercise, file: str, text: str, expected: str) -> CheckFailed:
    """``rejected`` for an exercise whose learner's file is ``file`` (a .conf, a .yaml)."""
    try:
        (stack.workspace / file).write_text(text)
        with pytest.raises(CheckFailed, match=expected) as failed:
            exercise.check(stack)
    finally:
        solve(stack)
    assert failed.type is CheckFailed and "Traceback" not in str(failed.value)
    return failed.value


def rejected_offline(workspace, exercise, text: str, expected: str, file: str | None = None) -> CheckFailed:
    """The learner's file written into a bare workspace; the check must fail before it needs a stack."""
    (workspace / (file or f"{exercise.name}.py")).write_text(text)
    with pytest.raises(CheckFailed, match=expected) as failed:
        exercise.check(WorkspaceOnly(workspace))
    assert failed.type is CheckFailed and "the check could not finish" not in str(failed.value)
    return failed.value


# -- lab 04 · exercise 1: the primary's side of replication --------------------------------------
def replication(settings: str = '{"wal_level": "replica", "max_wal_senders": "10", "wal_keep_size": "256MB"}',
                role: str = 'f"CREATE ROLE {role} WITH REPLICATION LOGIN PASSWORD {password_literal}"',
                hba: str = 'f"host replication {role} {standby_address} scram-sha-256"') -> str:
    return (f"def primary_settings():\n    return {settings}\n\n\n"
            f"def replication_role_sql(role, password_literal):\n    return {role}\n\n\n"
            f"def hba_line(role, standby_address):\n    return {hba}\n")


REPLICATION_SETTINGS = [   # the settings are judged before the primary is touched
    ("wal-level-minimal", replication(settings='{"wal_level": "minimal", "max_wal_senders": "10", '
                                               '"wal_keep_size": "256MB"}'), r"wal_level 'minimal' records only"),
    ("one-wal-sender-per-standby", replication(settings='{"wal_level": "replica", "max_wal_senders": "1", '
                                                        '"wal_keep_size": "256MB"}'),
     r"max_wal_senders = 1: .*pg_basebackup -X stream needs two"),
    ("no-wal-kept", replication(settings='{"wal_level": "replica", "max_wal_senders": "10"}'),
     r"wal_keep_size is None: .*can never catch up"),
    ("settings-as-a-conf-string", replication(settings='"wal_level = replica\\nmax_wal_senders = 10"'),
     r"primary_settings\(\) returned str: return a dict"),
    ("hba-line-without-the-address-argument", replication().replace("def hba_line(role, standby_address)",
                                                                    "def hba_line(role)").replace(
        "{standby_address}", "127.0.0.1/32"), r"hba_line\(.*raised TypeError.*hba_line\(role, standby_address\)"),
]


@pytest.mark.parametrize("code, expected", table(REPLICATION_SETTINGS))
def test_replication_check_rejects_wrong_settings_before_touching_the_primary(tmp_path, code, expected):
    rejected_offline(tmp_path, lab04.replication, code, expected)


# -- lab 04 · exercise 3: shard_for and the hash ring (its rules run before any shard is written) -----
SHARD_FOR = "import bisect\nimport hashlib\n\n\ndef stable_hash(key):\n" \
            "    return int.from_bytes(hashlib.md5(str(key).encode()).digest()[:8], 'big')\n\n\n" \
            "def shard_for(key, n):\n    return stable_hash(key) % n\n"
RING = '''

class HashRing:
    def __init__(self, nodes, vnodes=100):
        self.points = sorted((stable_hash(f"{node}#{i}"), node) for node in nodes for i in range(vnodes))
        self.hashes = [h for h, _ in self.points]

    def node_for(self, key):
        i = bisect.bisect_left(self.hashes, stable_hash(key)) % len(self.hashes)
        return self.points[i][1]
'''
SHARDING = [
    ("pythons-salted-hash", SHARD_FOR.replace("return stable_hash(key) % n", "return hash(str(key)) % n") + RING,
     r"Python's hash\(\) is salted per process"),
    ("ring-on-pythons-hash", SHARD_FOR + RING.replace("stable_hash(f", "hash(f").replace("stable_hash(key)", "hash(str(key))"),
     r"HashRing.node_for answers differently in a new process"),
    ("the-last-digit-not-a-hash", SHARD_FOR.replace("return stable_hash(key) % n", "return ord(str(key)[-1]) % n") + RING,
     r"one shard is \d+% off an even share .*mix the key's bits"),
    ("a-ring-that-is-modulo", SHARD_FOR + '''

class HashRing:
    def __init__(self, nodes):
        self.nodes = list(nodes)

    def node_for(self, key):
        return self.nodes[shard_for(key, len(self.nodes))]
''', r"adding node-4 moved key \d+ from node-\d to node-\d: .*only moves to the new node"),
    ("a-ring-without-virtual-nodes", SHARD_FOR + RING.replace("vnodes=100", "vnodes=1"),
     r"the ring puts .* keys on its 4 nodes .*virtual nodes"),
    ("no-wrap-around-past-the-last-point", SHARD_FOR + RING.replace(" % len(self.hashes)", ""),
     r"your sharding code raised IndexError"),
    ("returns-the-point-not-the-node", SHARD_FOR + RING.replace("return self.points[i][1]", "return self.points[i]"),
     r"node_for\(1\) returned \(\d+, '[a-d]'\): it must return one of the nodes"),
]


@pytest.mark.parametrize("code, expected", table(SHARDING))
def test_sharding_check_rejects_a_wrong_answer_before_any_shard_is_written(tmp_path, code, expected):
    rejected_offline(tmp_path, lab04.sharding, code, expected)


# -- lab 07 · exercise 2: the circuit breaker (its state machine runs on a fake clock first) ---------
def breaker(old: str, new: str) -> str:
    return edited("stack/shop/reference/circuit_breaker.py", old, new)


CIRCUIT_BREAKER = [
    ("never-half-open", lambda: breaker('if self._state == "open" and self.clock() - self.opened_at >= self.reset_timeout_s:',
                                        "if False:"), r"2.1 s after opening .* allow\(\) said no"),
    ("half-open-lets-everything-through", lambda: breaker(
        'if state == "half_open" and not self.probe_in_flight:', 'if state == "half_open":'),
     r"half-open, a second call was allowed while the probe is still out"),
    ("counts-all-failures-not-in-a-row", lambda: breaker(
        '        self._state = "closed"\n        self.failures = 0\n', '        self._state = "closed"\n'),
     r"a success resets the count"),
    ("opens-one-failure-late", lambda: breaker("self.failures >= self.failure_threshold",
                                               "self.failures > self.failure_threshold"),
     r"after 3 failures in a row \(threshold 3\) the breaker is 'closed', expected 'open'"),
    ("a-failed-probe-does-not-reopen", lambda: breaker('if self._state == "half_open" or self.failures',
                                                       "if self.failures").replace(
        "self.opened_at = self.clock()\n", "self.opened_at = self.clock()\n            self.failures = 0\n"),
     r"the probe failed and the breaker is 'half_open'"),
    ("open-lets-calls-through", lambda: breaker('        if state == "closed":\n            return True',
                                                '        if state in ("closed", "open"):\n            return True'),
     r"an open breaker allowed a call"),
    ("time-time-hard-coded", lambda: breaker("self.clock()", "time.monotonic()").replace("self.clock()", "time.monotonic()"),
     r"2.1 s after opening .* allow\(\) said no"),
]


@pytest.mark.parametrize("make, expected", table(CIRCUIT_BREAKER))
def test_circuit_breaker_state_machine_rejects_a_wrong_breaker_before_the_live_drill(tmp_path, make, expected):
    rejected_offline(tmp_path, lab07.circuit_breaker, make(), expected)


# -- lab 05 · exercise 3: broker.yaml (the risks no crash drill can show are named first) ------------
BROKER = [
    ("redis-fsync-every-second", "broker: redis\nappendonly: yes\nappendfsync: everysec\n",
     r"appendfsync everysec: .*a power cut or a kernel crash loses up to the last second"),
    ("redis-fsync-left-to-the-kernel", "broker: redis\nappendonly: yes\nappendfsync: no\n",
     r"appendfsync no: the kernel decides"),
    ("rabbitmq-without-confirms", "broker: rabbitmq\ndurable: true\npersistent: true\nconfirm_publish: false\n",
     r"confirm_publish: false — the publish returns before RabbitMQ has the message on disk"),
    ("rabbitmq-defaults", "broker: rabbitmq\n", r"confirm_publish: false"),
    ("a-redis-setting-on-rabbitmq", "broker: rabbitmq\ndurable: true\npersistent: true\nconfirm_publish: true\n"
     "appendfsync: always\n", r"appendfsync is a setting of broker: redis, not of broker: rabbitmq"),
    ("kafka", "broker: kafka\n", r"broker: 'kafka' — write `broker: redis` or `broker: rabbitmq`"),
]


@pytest.mark.parametrize("text, expected", table(BROKER))
def test_broker_check_rejects_settings_that_break_the_promise_before_any_drill(tmp_path, text, expected):
    rejected_offline(tmp_path, lab05.broker_settings, text, expected, file="broker.yaml")


# -- lab 05 · exercises 1 and 2: their shape is judged before the database is --------------------
def test_idempotency_and_order_task_checks_reject_a_sync_function_before_touching_the_database(tmp_path):
    rejected_offline(tmp_path, lab05.idempotency, "def apply_once(conn, key, order_id, amount_cents):\n    return True\n",
                     r"apply_once must be `async def`")
    rejected_offline(tmp_path, lab05.order_task, "def process_order(conn, order_id, pay):\n    return 'done'\n",
                     r"process_order must be `async def`")


# -- lab 07 · exercise 1: alert rules (promtool and the rules' shape are judged before Prometheus) ----
def _rules_reference() -> str:
    return reference_text("stack/shop/reference/alert_rules.yaml")


def rules(old: str, new: str, count: int = 1) -> str:
    return edited("stack/shop/reference/alert_rules.yaml", old, new, count)


ALERT_RULES_STATIC = [
    ("production-for", lambda: rules("for: 3s", "for: 5m"), r"HighCpu has `for: 5m`: keep it at most 15s"),
    ("another-name", lambda: rules("alert: HighCpu", "alert: HighCPU"), r"no alert named HighCpu in alert_rules.yaml"),
    ("rate-of-an-instant-vector", lambda: rules('rate(process_cpu_seconds_total{job="shop"}[10s])',
                                                'rate(process_cpu_seconds_total{job="shop"})'),
     r"promtool rejects alert_rules.yaml: .*range vector"),
    ("an-average-not-the-p95", lambda: rules("""histogram_quantile(0.95, sum by (service, le) (
            rate(http_request_duration_seconds_bucket{job="shop", route!~"/metrics|/health|/ready"}[10s]))) > 0.2""",
                                             """sum by (service) (rate(http_request_duration_seconds_sum{job="shop"}[10s]))
            / sum by (service) (rate(http_request_duration_seconds_count{job="shop"}[10s])) > 0.2"""),
     r"HighLatency's expr takes no 95th percentile: an average"),
    ("a-counter-not-its-rate", lambda: rules('rate(process_cpu_seconds_total{job="shop"}[10s]) > 0.5',
                                             'process_cpu_seconds_total{job="shop"} > 0.5'),
     r"HighCpu compares the counter process_cpu_seconds_total itself: a counter only grows"),
    ("errors-counted-not-their-rate", lambda: rules('sum by (service) (rate(http_requests_total{job="shop", route!~"/metrics|/health|/ready", status=~"5.."}[10s]))',
                                                    'sum by (service) (http_requests_total{job="shop", route!~"/metrics|/health|/ready", status=~"5.."})'),
     r"HighErrorRate compares the counter http_requests_total itself"),
    ("a-bare-list-of-rules", lambda: "- alert: HighCpu\n  expr: up == 0\n", r"must hold a mapping with a `groups:` list"),
    ("tabs-for-indentation", lambda: _rules_reference().replace("    rules:", "\trules:"), r"is not valid YAML"),
]


@pytest.mark.parametrize("make, expected", table(ALERT_RULES_STATIC))
def test_alert_rules_check_rejects_a_wrong_file_before_prometheus_loads_it(tmp_path, make, expected):
    stack = Stack(lab=7, runtime="local", state_dir=tmp_path)    # not up: promtool runs on this host
    (stack.workspace / "alert_rules.yaml").write_text(make())
    with pytest.raises(CheckFailed, match=expected) as failed:
        lab07.alert_rules.check(stack)
    assert "the check could not finish" not in str(failed.value)


# -- lab 04 on a live stack: the primary's role and pg_hba line, read routing, the debit ---------------
REPLICATION_ON_THE_PRIMARY = [
    ("a-superuser-for-replication", replication(
        role='f"CREATE ROLE {role} WITH SUPERUSER LOGIN PASSWORD {password_literal}"'), r"'replicator' is a SUPERUSER"),
    ("a-role-without-replication", replication(role='f"CREATE ROLE {role} WITH LOGIN PASSWORD {password_literal}"'),
     r"'replicator' has no REPLICATION attribute"),
    ("trust-in-pg-hba", replication(hba='f"host replication {role} {standby_address} trust"'),
     r"authenticates with 'trust': anyone on this host could copy the whole database"),
    ("all-databases-not-replication", replication(hba='f"host all {role} {standby_address} scram-sha-256"'),
     r"replication connections only match the keyword 'replication'"),
]

READ_ROUTING = [
    ("every-read-to-the-replica", "async def choose_node(write_lsn, replica):\n    return 'replica'\n",
     r"a stale read: the client that just created user \d+ read it from the replica"),
    ("every-read-to-the-primary", "async def choose_node(write_lsn, replica):\n    return 'primary'\n",
     r"a read from a client that wrote nothing was served by the primary"),
    ("the-primary-after-any-write", "async def choose_node(write_lsn, replica):\n"
     "    return 'replica' if write_lsn is None else 'primary'\n",
     r"once the replica had replayed the write, the writer's read still went to the primary"),
    ("the-query-not-awaited", "async def choose_node(write_lsn, replica):\n    if write_lsn is None:\n"
     "        return 'replica'\n    caught_up = replica.fetchval('SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn', "
     "write_lsn)\n    return 'replica' if caught_up else 'primary'\n", r"a stale read"),
    ("not-async", "def choose_node(write_lsn, replica):\n    return 'replica'\n", r"choose_node must be `async def`"),
]

DEBIT_OPTIMISTIC = '''

async def debit_optimistic(conn, account_id, amount, attempts=20):
    for _ in range(attempts):
        row = await conn.fetchrow("SELECT balance, version FROM accounts WHERE id = $1", account_id)
        if row is None or row["balance"] < amount:
            return None
        balance = await conn.fetchval("UPDATE accounts SET balance = $2, version = version + 1"
                                      " WHERE id = $1 AND version = $3 RETURNING balance",
                                      account_id, row["balance"] - amount, row["version"])
        if balance is not None:
            return balance
    raise TooManyConflicts("busy")
'''
DEBIT_ATOMIC = '''from shop.accounts import TooManyConflicts


async def debit(conn, account_id, amount):
    return await conn.fetchval("UPDATE accounts SET balance = balance - $2, version = version + 1"
                               " WHERE id = $1 AND balance >= $2 RETURNING balance", account_id, amount)
'''
DEBIT = [
    ("read-check-then-write", '''from shop.accounts import TooManyConflicts


async def debit(conn, account_id, amount):
    balance = await conn.fetchval("SELECT balance FROM accounts WHERE id = $1", account_id)
    if balance is None or balance < amount:
        return None
    return await conn.fetchval("UPDATE accounts SET balance = $2 WHERE id = $1 RETURNING balance",
                               account_id, balance - amount)
''' + DEBIT_OPTIMISTIC, r"debits of 10 succeeded but the balance fell by \d+: a lost update"),
    ("for-update-without-a-transaction", '''from shop.accounts import TooManyConflicts


async def debit(conn, account_id, amount):
    balance = await conn.fetchval("SELECT balance FROM accounts WHERE id = $1 FOR UPDATE", account_id)
    if balance is None or balance < amount:
        return None
    return await conn.fetchval("UPDATE accounts SET balance = $2 WHERE id = $1 RETURNING balance",
                               account_id, balance - amount)
''' + DEBIT_OPTIMISTIC, r"debits of 10 succeeded but the balance fell by \d+: a lost update"),
    ("optimistic-without-the-version", DEBIT_ATOMIC + DEBIT_OPTIMISTIC.replace(" AND version = $3", "").replace(
        'account_id, row["balance"] - amount, row["version"]', 'account_id, row["balance"] - amount'),
     r"debits of 10 succeeded but the balance fell by \d+: a lost update"),
    ("no-balance-guard", DEBIT_ATOMIC.replace(" AND balance >= $2", "") + DEBIT_OPTIMISTIC,
     r"debiting 25 from 20 answered 200 .*return None when the balance cannot cover"),
    ("returns-a-bool-not-the-balance", DEBIT_ATOMIC.replace("return await conn.fetchval", "return 1 == await conn.execute")
     .replace("RETURNING balance", "") + DEBIT_OPTIMISTIC, r"debiting 10 from 30 answered 500 .*debit\(\) returned bool"),
]


lab4 = solved_stack(4, scope="class")   # up for this class only: one lab's stack at a time


class TestLab04Live:
    @pytest.mark.parametrize("code, expected", table(REPLICATION_ON_THE_PRIMARY))
    def test_replication_check_rejects_a_wrong_role_or_hba_line_on_the_primary(self, lab4, code, expected):
        rejected(lab4, lab04.replication, code, expected)

    @pytest.mark.parametrize("code, expected", table(READ_ROUTING))
    def test_read_routing_check_rejects_a_wrong_answer_saying_what_is_wrong(self, lab4, code, expected):
        rejected(lab4, lab04.read_routing, code, expected)

    @pytest.mark.parametrize("code, expected", table(DEBIT))
    def test_debit_check_rejects_a_wrong_answer_saying_what_is_wrong(self, lab4, code, expected):
        rejected(lab4, lab04.debit, code, expected)


# -- lab 02 · exercise 1: the upstream block nginx runs --------------------------------------------
def _upstream_reference() -> str:
    return reference_text("stack/deploy/nginx/reference/upstream.conf")


def upstream(old: str, new: str) -> str:
    return edited("stack/deploy/nginx/reference/upstream.conf", old, new)


UPSTREAM_LIVE = [
    ("no-read-timeout", lambda: upstream("proxy_read_timeout 2s;\n", ""),
     r"frozen \(SIGSTOP\), \d+ of \d+ requests failed .*by default nginx waits 60 s"),
    ("only-the-upstream-block", lambda: _upstream_reference().split("# What nginx does")[0],
     r"frozen \(SIGSTOP\), \d+ of \d+ requests failed .*by default nginx waits 60 s"),
    ("no-retry-on-another-replica", lambda: upstream("proxy_next_upstream error timeout http_502 http_503;",
                                                     "proxy_next_upstream off;"),
     r"killed mid-load, \d+ of \d+ GET requests failed .*nginx handed the failure to the client"),
    ("another-name-than-users", lambda: upstream("upstream users {", "upstream backend {"),
     r"nginx rejected upstream.conf: host not found in upstream \"users\""),
    ("a-missing-semicolon", lambda: upstream("keepalive 16;", "keepalive 16"), r"nginx rejected upstream.conf: unexpected"),
]


def test_upstream_check_rejects_hard_coded_addresses_before_reloading_nginx(tmp_path):
    rejected_offline(tmp_path, lab02.upstream, upstream("server {address}", "server 127.0.0.1:8001"),
                     r"no line of upstream.conf holds \{address\}", file="upstream.conf")


lab2 = solved_stack(2, scope="class")


class TestLab02Live:
    @pytest.mark.parametrize("make, expected", table(UPSTREAM_LIVE))
    def test_upstream_check_rejects_a_wrong_block_saying_what_is_wrong(self, lab2, make, expected):
        rejected_file(lab2, lab02.upstream, "upstream.conf", make(), expected)


# -- lab 05 on a live stack: the idempotency guard, the task body, a broker that loses a restart -------
INSERT_PAYMENT = ('"INSERT INTO payments (idempotency_key, order_id, amount_cents) VALUES ($1, $2, $3)'
                  ' ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"')
IDEMPOTENCY = [
    ("check-then-insert", CHECK_THEN_INSERT, r"simultaneous deliveries failed with UniqueViolationError: two of them passed a check"),
    ("always-true", f'''
async def apply_once(conn, key, order_id, amount_cents):
    await conn.execute({INSERT_PAYMENT}, key, order_id, amount_cents)
    return True
''', r"16 simultaneous deliveries: 16 said True .*exactly 1 did"),
    ("returns-the-id", f'''
async def apply_once(conn, key, order_id, amount_cents):
    return await conn.fetchval({INSERT_PAYMENT}, key, order_id, amount_cents)
''', r"apply_once\(\) returned .*None.*: return True when this call recorded the payment"),
    ("one-payment-per-order", '''
async def apply_once(conn, key, order_id, amount_cents):
    payment_id = await conn.fetchval(
        "INSERT INTO payments (idempotency_key, order_id, amount_cents) SELECT $1, $2, $3"
        " WHERE NOT EXISTS (SELECT 1 FROM payments WHERE order_id = $2)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id", key, order_id, amount_cents)
    return payment_id is not None
''', r"a payment under a different key was refused: the guard is per key"),
]

CLAIM = ('''    order = await conn.fetchrow(
        "UPDATE orders SET status = 'processing', updated_at = clock_timestamp()"
        " WHERE id = $1 AND status IN ('pending', 'processing', 'retrying') RETURNING id, total_cents", order_id)
    if order is None:
        return "skipped"
''')
DONE = ('''    await conn.execute("UPDATE orders SET status = 'done', done_at = clock_timestamp(), updated_at = clock_timestamp()"
                       " WHERE id = $1", order_id)
    return "done"
''')
TASK = "async def process_order(conn, order_id, pay):\n"
ORDER_TASK = [
    ("pending-only-a-dead-workers-order-stays", TASK + CLAIM.replace("('pending', 'processing', 'retrying')",
                                                                     "('pending', 'retrying')")
     + "    await pay(dict(order))\n" + DONE, r"an order left 'processing' by a worker that died ended 'processing'"),
    ("anything-not-done", TASK + CLAIM.replace("status IN ('pending', 'processing', 'retrying')", "status <> 'done'")
     + "    await pay(dict(order))\n" + DONE, r"a redelivered 'dead' order was processed again"),
    ("one-long-transaction", TASK + "    async with conn.transaction():\n"
     + "\n".join("    " + line if line else line for line in (CLAIM + "    await pay(dict(order))\n" + DONE).split("\n")),
     r"while pay\(\) ran, another connection saw status 'pending'"),
    ("swallows-the-payment-error", TASK + CLAIM + "    try:\n        await pay(dict(order))\n"
     "    except Exception:\n        return 'failed'\n" + DONE, r"when pay\(\) raised, process_order\(\) returned normally"),
    ("done-before-the-payment", TASK + CLAIM + DONE.replace('    return "done"\n', "") + "    await pay(dict(order))\n"
     "    return 'done'\n", r"while pay\(\) ran, another connection saw status 'done'"),
    ("checks-then-updates", TASK + '''    status = await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
    if status == "done":
        return "skipped"
    order = await conn.fetchrow("SELECT id, total_cents FROM orders WHERE id = $1", order_id)
    await pay(dict(order))
''' + DONE, r"while pay\(\) ran, another connection saw status 'pending'"),
]


lab5 = solved_stack(5, scope="class")


class TestLab05Live:
    @pytest.mark.parametrize("code, expected", table(IDEMPOTENCY))
    def test_idempotency_check_rejects_a_wrong_guard_saying_what_is_wrong(self, lab5, code, expected):
        rejected(lab5, lab05.idempotency, code, expected)

    @pytest.mark.parametrize("code, expected", table(ORDER_TASK))
    def test_order_task_check_rejects_a_wrong_task_body_saying_what_is_wrong(self, lab5, code, expected):
        rejected(lab5, lab05.order_task, code, expected)

    def test_broker_check_rejects_transient_messages_after_its_crash_drill(self, lab5):
        rejected_file(lab5, lab05.broker_settings, "broker.yaml",
                      "broker: rabbitmq\ndurable: true\npersistent: false\nconfirm_publish: true\n",
                      r"rabbitmq-1 SIGKILLed with \d+ order messages waiting: \d+ of \d+ accepted orders never done — "
                      r"persistent: false")


# -- lab 08 · exercise: the idempotent projector (its rules need a Redis, not the event pipeline) ------
PROJECTOR = '''
def apply(event, redis):
    order, user = f"rm:order:{event['order_id']}", f"rm:user:{event['user_id']}"
    last = int(redis.hget(order, "seq") or 0)
    if event["seq"] <= last:
        return False
    pipe = redis.pipeline()
    pipe.hset(order, mapping={"seq": event["seq"], "status": event["status"], "user_id": event["user_id"],
                              "total_cents": event["total_cents"]})
    pipe.hincrby(order, "events", 1)
    if event["type"] == "created":
        pipe.hincrby(user, "orders", 1)
        pipe.zadd(f"{user}:orders", {event["order_id"]: event["order_id"]})
    if event["status"] == "done":
        pipe.hincrby(user, "done", 1)
        pipe.hincrby(user, "spent_cents", event["total_cents"])
    pipe.execute()
    return True
'''


def projector(old: str, new: str) -> str:
    assert old in PROJECTOR, f"the projector no longer holds {old!r}"
    return PROJECTOR.replace(old, new, 1)


PROJECTOR_WRONG = [
    ("no-seq-guard", projector('    if event["seq"] <= last:\n        return False\n', ""),
     r"a redelivered 'created' event changed the read model"),
    ("lets-the-same-seq-through", projector('event["seq"] <= last', 'event["seq"] < last'),
     r"a redelivered 'created' event changed the read model"),
    ("returns-nothing", projector("    return True\n", ""), r"apply\(\) returned None for a new event"),
    ("spends-on-every-event", projector('''    if event["status"] == "done":
        pipe.hincrby(user, "done", 1)
        pipe.hincrby(user, "spent_cents", event["total_cents"])''', '''    pipe.hincrby(user, "spent_cents", event["total_cents"])
    if event["status"] == "done":
        pipe.hincrby(user, "done", 1)'''), r"rm:user:<id> is .*, expected orders=1, done=1, spent_cents=4200"),
    ("check-then-write", PROJECTOR, r"one new event applied by 8 clients at the same instant: \d+ said True"),
]


class RedisOnly(WorkspaceOnly):
    """What the projector's rules see of a stack: a workspace and a Redis (another lab's)."""

    def __init__(self, workspace, redis_url: str):
        super().__init__(workspace)
        self._redis_url = redis_url

    def redis_url(self) -> str:
        return self._redis_url


@pytest.mark.parametrize("code, expected", table(PROJECTOR_WRONG))
def test_projector_check_rejects_a_wrong_apply_before_the_live_pipeline(lab3, tmp_path, code, expected):
    (tmp_path / "projector.py").write_text(code)
    with pytest.raises(CheckFailed, match=expected) as failed:
        lab08.projector.check(RedisOnly(tmp_path, lab3.redis_url()))
    assert "the check could not finish" not in str(failed.value)


# -- lab 07 on a live stack: an alert that fires on a quiet stack --------------------------------------
lab7 = solved_stack(7, scope="class")


class TestLab07Live:
    def test_alert_rules_check_rejects_a_threshold_a_quiet_stack_already_passes(self, lab7):
        # a rate is never negative: ">= 0" holds on every scrape, whatever the stack does
        always = rules('rate(process_cpu_seconds_total{job="shop"}[10s]) > 0.5', 'rate(process_cpu_seconds_total{job="shop"}[10s]) >= 0')
        rejected_file(lab7, lab07.alert_rules, "alert_rules.yaml", always,
                      r"on a quiet stack HighCpu is already (pending|firing) .*its threshold must stay quiet")
