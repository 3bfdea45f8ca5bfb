"""Lab 03's user cache through the real service, real Redis and real Postgres."""

import asyncio
import json
import time

import httpx
import pytest

from scalelab.labs import lab03
from shop.cache import UserCache, connect
from shop.config import Settings
from shop.exercises import Exercises


@pytest.fixture
def users(lab3):
    """One client per replica: the cache is shared, so each replica must see the same thing."""
    clients = [httpx.Client(base_url=lab3.member_url(m), timeout=10) for m in lab3.members("users")]
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
def signed_up(users):
    """A new user named "Cached" and the headers that carry its token (PATCH/DELETE need it)."""
    return lab03.signed_up(users[0], "Cached")


@pytest.fixture
def user(signed_up):
    return signed_up[0]


@pytest.fixture
def token(signed_up):
    return signed_up[1]


def test_the_stack_runs_three_replicas_with_the_cache_and_the_limiter_on(lab3, users):
    assert len(users) == 3
    for client in users:
        stats = client.get("/stats").json()
        assert stats["cache"]["enabled"] and stats["cache"]["source"] == "workspace"
        assert stats["rate_limit"]["enabled"] and stats["rate_limit"]["source"] == "workspace"


def test_repeated_reads_on_every_replica_cost_one_database_read(lab3, users, user):
    lab03.reset_db_reads(lab3)
    bodies = [client.get(f"/users/{user['id']}").json() for client in users for _ in range(3)]
    assert bodies == [user] * 9
    assert lab03.db_reads(lab3) == 1


def test_the_cached_copy_is_json_with_the_configured_ttl(lab3, users, user):
    users[0].get(f"/users/{user['id']}")
    r = lab03.redis_client(lab3)
    ttl_s = users[0].get("/stats").json()["cache"]["ttl_s"]
    assert json.loads(r.get(f"user:{user['id']}"))["email"] == user["email"]
    assert 0 < r.ttl(f"user:{user['id']}") <= ttl_s


def test_a_patch_is_visible_on_the_next_read_on_every_replica(users, user, token):
    for client in users:
        assert client.get(f"/users/{user['id']}").json()["name"] == "Cached"
    assert users[1].patch(f"/users/{user['id']}", json={"name": "Renamed"}, headers=token).status_code == 200
    assert [client.get(f"/users/{user['id']}").json()["name"] for client in users] == ["Renamed"] * 3


def test_a_deleted_user_is_404_not_a_cached_ghost(users, user, token):
    assert users[0].get(f"/users/{user['id']}").status_code == 200
    assert users[2].delete(f"/users/{user['id']}", headers=token).status_code == 204
    assert [client.get(f"/users/{user['id']}").status_code for client in users] == [404] * 3


def test_redis_killed_reads_and_writes_still_succeed_from_the_database(lab3, users, user, token):
    lab3.kill("redis-1")
    try:
        assert users[0].get("/ready").status_code == 200   # Redis is optional: still ready
        assert [client.get(f"/users/{user['id']}").json() for client in users] == [user] * 3
        assert users[0].patch(f"/users/{user['id']}", json={"name": "While Down"}, headers=token).status_code == 200
        assert users[1].get(f"/users/{user['id']}").json()["name"] == "While Down"
        assert users[0].get("/stats").json()["cache"]["redis_errors"] > 0
    finally:
        lab3.start("redis-1")
    # Redis is back (empty): the cache fills again.
    lab03.reset_db_reads(lab3)
    for _ in range(4):
        assert users[2].get(f"/users/{user['id']}").json()["name"] == "While Down"
    assert lab03.db_reads(lab3) == 1   # the first miss; the replicas reconnected by themselves


def test_a_hung_redis_costs_a_request_the_timeout_not_an_error(lab3, users, user):
    timeout_s = Settings().redis_timeout_s
    lab3.kill("redis-1", signal="STOP")
    try:
        started = time.perf_counter()
        got = users[0].get(f"/users/{user['id']}")
        elapsed = time.perf_counter() - started
    finally:
        lab3.kill("redis-1", signal="CONT")
    assert got.status_code == 200 and got.json() == user
    assert elapsed < 4 * timeout_s + 0.5, f"{elapsed:.2f} s: Redis calls must be bounded by short timeouts"


def test_with_the_exercise_not_written_the_cache_reads_the_database(lab3, tmp_path):
    settings = Settings(redis_url=lab3.redis_url(), workspace=tmp_path, exercises=["user_cache"])

    async def go():
        client = connect(settings)
        cache = UserCache(client, Exercises(settings), ttl_s=5)
        loaded = []

        async def load(user_id):
            loaded.append(user_id)
            return {"id": user_id}
        try:
            return await cache.get(7, load), loaded, cache.stats()
        finally:
            await client.aclose()

    user, loaded, stats = asyncio.run(go())
    assert user == {"id": 7} and loaded == [7]
    assert not stats["enabled"] and "not done" in stats["off_reason"]


def test_lab_01_runs_without_redis_cache_or_limiter(stack):
    stats = httpx.get(f"{stack.url('users')}/stats", timeout=10).json()
    assert not stats["cache"]["enabled"] and not stats["rate_limit"]["enabled"]
    answered = [httpx.get(f"{stack.url('users')}/users?limit=1", headers={"X-Client-Id": "lab1"}, timeout=10).status_code
                for _ in range(30)]
    assert answered == [200] * 30
