"""Lab 04, part 2 — sharding by key, the double-spend race, and the N+1 pitfall."""

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter

import httpx
import pandas as pd

from scalelab import aio, db
from scalelab.exercise import CheckFailed, Exercise, NotAttempted, expect_status, is_stub
from scalelab.sharding import ShardedStore

# What the package re-exports (lab04/__init__.py): the notebook's `lab04.<name>`.
__all__ = ["sharding", "debit", "race", "hammer", "new_account", "reset_queries", "queries", "optimistic_writes",
           "SHARDS", "KEYS", "EVEN_WITHIN", "RING_EVEN_WITHIN", "MODULO_MOVES_OVER", "RING_MOVES_UNDER"]

SHARDS = 4
KEYS = 10_000
EVEN_WITHIN = 0.10        # shard_for: every shard within ±10 % of KEYS / SHARDS (σ is under 1 %)
RING_EVEN_WITHIN = 0.35   # the ring: ±35 % (its spread comes from where the virtual nodes fall)
MODULO_MOVES_OVER = 0.60  # 4 → 5 shards with modulo: a key stays only if h % 4 == h % 5 (4 in 20): ~80 % move
RING_MOVES_UNDER = 0.35   # with a ring: only the keys the new node takes over move, ~1/5


# -- helpers the checks and the notebook share ------------------------------------------
def _shop_admin_dsn(stack) -> str:
    return stack.database_url("admin").rsplit("/", 1)[0] + "/shop"


def reset_queries(stack) -> None:
    """Zero Postgres' statement counters (pg_stat_statements; needs the admin role)."""
    db.fetch(_shop_admin_dsn(stack), "SELECT pg_stat_statements_reset()")


def queries(stack) -> int:
    """Statements on the accounts or users tables of the shop database since ``reset_queries``."""
    return int(db.fetchval(stack.database_url(), r"""
        SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND query ~* '\m(accounts|users)\M' AND query !~* 'pg_stat_statements'"""))


def optimistic_writes(stack) -> tuple[int, int]:
    """(calls, rows) of the optimistic UPDATEs (``... AND version = $n``) since ``reset_queries``:
    calls - rows is how many attempts lost the race and were retried."""
    row = db.fetch(stack.database_url(), r"""
        SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(rows), 0) AS rows FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND query ~* '^\s*UPDATE\s+accounts' AND query ~* 'version\s*=\s*\$\d'""")[0]
    return int(row["calls"]), int(row["rows"])


def new_account(api: httpx.Client, balance: int) -> dict:
    """A new user (no password) owning a new account holding ``balance``."""
    user = api.post("/users", json={"email": f"acct-{uuid.uuid4().hex[:10]}@example.com", "name": "Account Owner"})
    expect_status(user, 201, "POST /users", ": is the stack healthy?")
    account = api.post("/accounts", json={"owner_id": user.json()["id"], "balance": balance})
    return expect_status(account, 201, "POST /accounts").json()


def hammer(url: str, account_id: int, requests: int = 50, amount: int = 10, strategy: str = "atomic",
           concurrency: int = 50) -> pd.DataFrame:
    """``requests`` debits of ``amount``, all in flight at once; one row per response."""
    async def go():
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=20, limits=limits) as client:
            async def one(_):
                r = await client.post(f"/accounts/{account_id}/debit", params={"strategy": strategy},
                                      json={"amount": amount})
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                return {"status": r.status_code, "balance": body.get("balance"), "error": body.get("error"),
                        "detail": body.get("detail"), "instance": r.headers.get("x-instance")}
            return await asyncio.gather(*map(one, range(requests)))
    return pd.DataFrame(aio.run(go()))


def balance_of(api: httpx.Client, account_id: int, attempts: int = 5) -> int:
    """The account's balance; asked again (bounded) while the service is still busy from a burst
    (503 after its pool wait), never read out of an error body."""
    for _ in range(attempts):
        answer = api.get(f"/accounts/{account_id}")
        if answer.status_code == 200:
            return answer.json()["balance"]
        if answer.status_code not in (502, 503, 504):
            break
        time.sleep(0.5)   # the burst's requests still hold the pool: let them finish
    raise CheckFailed(f"GET /accounts/{account_id} answered {answer.status_code} {answer.text[:200]}")


def race(stack, strategy: str, balance: int = 100, requests: int = 50, amount: int = 10) -> dict:
    """One account of ``balance``, ``requests`` concurrent debits of ``amount``: what came out."""
    with httpx.Client(base_url=stack.url("users"), timeout=10) as api:
        account = new_account(api, balance)
        frame = hammer(stack.url("users"), account["id"], requests, amount, strategy)
        final = balance_of(api, account["id"])
    ok = frame[frame.status == 200]
    return {"strategy": strategy, "requests": requests, "succeeded": len(ok),
            "refused (409)": int((frame.status == 409).sum()),
            "other": int((~frame.status.isin([200, 409])).sum()),
            "final balance": final, "balance fell by": balance - final, "charged": len(ok) * amount,
            "instances": frame.instance.nunique(), "frame": frame}


# -- exercise 1: shard_for and a consistent-hash ring -------------------------------------
_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("probe", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
keys = json.loads(sys.argv[2])
ring = m.HashRing(["a", "b", "c", "d"])
print(json.dumps([[m.shard_for(k, 4) for k in keys], [ring.node_for(k) for k in keys]]))
"""


def _in_fresh_processes(path, keys: list) -> list:
    """shard_for and the ring's answers for ``keys`` in two new interpreters with different hash seeds."""
    answers = []
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", _PROBE, str(path), json.dumps(keys)], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "PYTHONHASHSEED": seed})
        if out.returncode != 0:
            raise CheckFailed(f"sharding.py fails in a fresh interpreter: {out.stderr.strip()[-300:]}")
        answers.append(json.loads(out.stdout))
    return answers


def _spread(counts: Counter, total: int, n: int) -> float:
    return max(abs(counts.get(i, 0) - total / n) for i in range(n)) / (total / n)


def _check_sharding(stack, exercise) -> str:
    try:
        return _check_sharding_code(stack, exercise)
    except CheckFailed:
        raise
    except NotImplementedError:
        raise NotAttempted("a function your code calls still raises NotImplementedError (stable_hash?)") from None
    except Exception as exc:   # learner code: name the failure, no traceback
        raise CheckFailed(f"your sharding code raised {type(exc).__name__}: {exc}") from None


def _check_sharding_code(stack, exercise) -> str:
    shard_for = exercise.function(stack, "shard_for")
    module = exercise.load(stack)
    ring_class = getattr(module, "HashRing", None)
    if ring_class is None:
        raise CheckFailed("sharding.py must define the class HashRing")
    if is_stub(ring_class.__init__) or is_stub(ring_class.node_for):
        raise NotAttempted("HashRing still raises NotImplementedError: write __init__ and node_for")

    # 1. A number in range, for ints and strings alike.
    for key in [1, 2, 42, 10**12, "ada@example.com", "user:7"]:
        got = shard_for(key, SHARDS)
        if not isinstance(got, int) or not 0 <= got < SHARDS:
            raise CheckFailed(f"shard_for({key!r}, {SHARDS}) returned {got!r}: expected an int 0 .. {SHARDS - 1}")

    probe = ring_class(["a", "b", "c", "d"])
    for key in [1, 42, "ada@example.com"]:
        if (node := probe.node_for(key)) not in ("a", "b", "c", "d"):
            raise CheckFailed(f"HashRing(['a', 'b', 'c', 'd']).node_for({key!r}) returned {node!r}: it must return "
                              "one of the nodes")

    # 2. Stable across processes: every replica and every script must agree where a key lives.
    keys = [f"user:{i}" for i in range(200)] + list(range(1, 201))
    here = [[shard_for(k, SHARDS) for k in keys], [ring_class(["a", "b", "c", "d"]).node_for(k) for k in keys]]
    for other in _in_fresh_processes(exercise.workspace_file(stack), keys):
        if other[0] != here[0]:
            differ = sum(a != b for a, b in zip(other[0], here[0], strict=True))
            raise CheckFailed(f"shard_for sends {differ} of {len(keys)} keys to another shard in a new process: "
                              "Python's hash() is salted per process — hash the key's bytes (hashlib) instead")
        if other[1] != here[1]:
            raise CheckFailed("HashRing.node_for answers differently in a new process: place nodes and keys on the "
                              "ring with a stable hash (hashlib), not hash()")

    # 3. Even: 10,000 keys over 4 shards.
    ids = range(1, KEYS + 1)
    counts = Counter(shard_for(k, SHARDS) for k in ids)
    if (spread := _spread(counts, KEYS, SHARDS)) > EVEN_WITHIN:
        raise CheckFailed(f"{KEYS} ids over {SHARDS} shards: {dict(sorted(counts.items()))} — one shard is "
                          f"{spread:.0%} off an even share (allowed {EVEN_WITHIN:.0%}): mix the key's bits (a hash), "
                          "don't take a slice of it")

    # 4. The ring: even enough, and adding a node moves only the keys it takes over.
    nodes = [f"node-{i}" for i in range(SHARDS)]
    four, five = ring_class(nodes), ring_class(nodes + [f"node-{SHARDS}"])
    before = {k: four.node_for(k) for k in ids}
    after = {k: five.node_for(k) for k in ids}
    ring_counts = Counter(before.values())
    if set(ring_counts) - set(nodes):
        raise CheckFailed(f"node_for returned {sorted(set(ring_counts) - set(nodes))[:3]}: "
                          "it must return one of the nodes")
    if (ring_spread := _spread(Counter({nodes.index(n): c for n, c in ring_counts.items()}),
                               KEYS, SHARDS)) > RING_EVEN_WITHIN:
        raise CheckFailed(f"the ring puts {dict(ring_counts)} of {KEYS} keys on its {SHARDS} nodes ({ring_spread:.0%} "
                          "off even): give each node many points on the ring (virtual nodes, e.g. 100)")
    moved = [k for k in ids if before[k] != after[k]]
    if wrong := [k for k in moved if after[k] != f"node-{SHARDS}"]:
        raise CheckFailed(f"adding node-{SHARDS} moved key {wrong[0]} from {before[wrong[0]]} to {after[wrong[0]]}: "
                          "with consistent hashing a key only moves to the new node")
    ring_moved = len(moved) / KEYS
    modulo_moved = sum(shard_for(k, SHARDS) != shard_for(k, SHARDS + 1) for k in ids) / KEYS
    if ring_moved >= RING_MOVES_UNDER:
        raise CheckFailed(f"going from {SHARDS} to {SHARDS + 1} nodes moved {ring_moved:.0%} of the keys; "
                          f"a ring moves about 1/{SHARDS + 1} of them: is node_for looking the key up on the ring?")

    # 5. Live: rows written through the store land on the shard shard_for names, and are found there.
    store = ShardedStore(stack, SHARDS)
    route = store.modulo(shard_for)
    store.clear()
    rows = [{"id": i, "email": f"shard-{i}@example.com", "name": f"Sharded {i}"} for i in range(1, 2001)]
    store.put_many(rows, route)
    held = store.ids()
    misplaced = [(i, name) for name, ids_ in held.items() for i in ids_ if route(i) != name]
    if misplaced or sum(map(len, held.values())) != len(rows):
        raise CheckFailed(f"{len(misplaced)} rows are not on the shard shard_for names (e.g. {misplaced[:2]})")
    sample = random.Random(4).sample(range(1, 2001), 200)
    found = store.get_many(sample, route)
    if missing := [k for k in sample if found.get(k) is None]:
        raise CheckFailed(f"looking up id {missing[0]} on the shard shard_for names found nothing")
    store.clear()
    return (f"stable across processes; {KEYS} ids → {dict(sorted(counts.items()))} (±{spread:.1%}); "
            f"4→5 shards: modulo moves {modulo_moved:.0%}, your ring {ring_moved:.0%} (all to the new node); "
            f"2,000 rows over {SHARDS} databases, 200 lookups each found on its shard")


sharding = Exercise(
    name="sharding",
    title="Exercise 3 · shard_for and a consistent-hash ring",
    checker=_check_sharding,
    hints=[
        "stable_hash: `hashlib.md5(str(key).encode()).digest()` is 16 bytes that never change; "
        "`int.from_bytes(digest[:8], \"big\")` turns 8 of them into a number. shard_for is that number % n.",
        "HashRing.__init__: for every node, for i in range(vnodes), a point stable_hash(f\"{node}#{i}\"); keep the "
        "points sorted as (hash, node) pairs, and the hashes alone in a list for bisect.",
        "node_for: `i = bisect.bisect_left(self.hashes, stable_hash(key)) % len(self.hashes)` — the first point at "
        "or after the key, wrapping around to the first — and return that point's node.",
    ],
    reference="shop.reference.sharding",
    handle="lab04.sharding",
)


# -- exercise 2: a debit that cannot overspend -------------------------------------------------
def _check_race(stack, strategy: str) -> dict:
    result = race(stack, strategy)
    frame = result.pop("frame")
    if (frame.status == 501).any():
        raise NotAttempted(frame[frame.status == 501].detail.iloc[0])
    if (frame.status == 500).any():
        raise CheckFailed(f"the service ran your {strategy} debit and it failed: "
                          f"{frame[frame.status == 500].detail.iloc[0]}")
    if result["other"]:
        bad = frame[~frame.status.isin([200, 409])].iloc[0]
        raise CheckFailed(f"a {strategy} debit answered {bad.status} {bad.error}: {bad.detail}")
    balances = sorted(frame[frame.status == 200].balance)
    name = "debit()" if strategy == "atomic" else "debit_optimistic()"
    if result["final balance"] < 0 or (balances and balances[0] < 0):
        raise CheckFailed(f"50 concurrent debits of 10 from 100 left the balance at {result['final balance']}: "
                          f"{name} must refuse a debit the balance cannot cover — check and write in one step")
    if result["balance fell by"] != result["charged"]:
        raise CheckFailed(f"{result['succeeded']} debits of 10 succeeded but the balance fell by "
                          f"{result['balance fell by']}: a lost update — two debits read the same balance and both "
                          "wrote; make the read-check-write one atomic step")
    if result["succeeded"] != 10:
        raise CheckFailed(f"{result['succeeded']} of 50 concurrent debits of 10 from 100 succeeded, expected exactly "
                          f"10 (then the balance is 0): {name} refused debits the balance could cover")
    if balances != list(range(0, 100, 10)):
        raise CheckFailed(f"the successful debits reported balances {balances}: expected 90, 80, ..., 0 once each")
    return result


def _check_debit(stack, exercise) -> str:
    exercise.function(stack, "debit")
    exercise.function(stack, "debit_optimistic")
    stack.restart("users")    # every replica loads debit.py from the workspace at start
    with httpx.Client(base_url=stack.url("users"), timeout=10) as api:
        account = new_account(api, 30)
        first = api.post(f"/accounts/{account['id']}/debit", json={"amount": 10})
        if first.status_code == 501:
            raise NotAttempted(first.json()["detail"])
        if first.status_code != 200 or first.json().get("balance") != 20:
            raise CheckFailed(f"debiting 10 from 30 answered {first.status_code} {first.text[:200]}: "
                              "expected 200 with balance 20 (return the new balance)")
        too_much = api.post(f"/accounts/{account['id']}/debit", json={"amount": 25})
        if too_much.status_code != 409 or too_much.json().get("error") != "insufficient_funds":
            raise CheckFailed(f"debiting 25 from 20 answered {too_much.status_code} {too_much.text[:200]}: "
                              "return None when the balance cannot cover the amount (the service answers 409)")
        if (kept := api.get(f"/accounts/{account['id']}").json()["balance"]) != 20:
            raise CheckFailed(f"a refused debit changed the balance from 20 to {kept}")
        unknown = api.post("/accounts/999999999/debit", json={"amount": 1})
        if unknown.status_code != 404:
            raise CheckFailed(f"debiting an unknown account answered {unknown.status_code} {unknown.text[:200]}: "
                              "return None when no row matched")
    results = [_check_race(stack, strategy) for strategy in ("atomic", "optimistic")]
    return "; ".join(f"{r['strategy']}: 50 concurrent debits of 10 from 100 over {r['instances']} replica(s) → "
                     f"{r['succeeded']} succeeded, {r['refused (409)']} × 409, balance {r['final balance']}"
                     for r in results) + "; 404 unknown account, 409 insufficient_funds"


debit = Exercise(
    name="debit",
    title="Exercise 4 · a debit that cannot overspend",
    checker=_check_debit,
    hints=[
        "debit: make the check part of the write — `UPDATE accounts SET balance = balance - $2 ... WHERE id = $1 "
        "AND balance >= $2 RETURNING balance`. conn.fetchval returns None when no row matched.",
        "debit_optimistic: read `balance, version`; if the balance is short return None; else `UPDATE ... SET "
        "balance = $2, version = version + 1 WHERE id = $1 AND version = $3 RETURNING balance` with the version "
        "you read.",
        "When that UPDATE returns None, another debit changed the row first: loop and read again (at most "
        "`attempts` times), then raise TooManyConflicts.",
        "Chose `SELECT ... FOR UPDATE` for debit()? The lock lasts only as long as a transaction: wrap the SELECT "
        "and the UPDATE in `async with conn.transaction():` — without it each statement commits on its own and "
        "the lock is gone before your UPDATE runs.",
    ],
    reference="shop.reference.debit",
    handle="lab04.debit",
)
