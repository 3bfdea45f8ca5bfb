"""Failure behaviour of the user service: graceful shutdown, a lost database, a stuck pool."""

import asyncio
import threading
import time
from contextlib import contextmanager

import asyncpg
import httpx

from scalelab import aio, db

from conftest import solved_stack

own_stack = solved_stack(1)   # this module kills and pauses its members: not the shared session stack


@contextmanager
def users_table_locked(stack):
    """Hold an exclusive lock on ``users`` (from another connection) until the block ends."""
    admin = stack.database_url("admin").rsplit("/", 1)[0] + "/shop"
    locked, release = threading.Event(), threading.Event()

    async def hold_lock():
        conn = await asyncpg.connect(admin)
        async with conn.transaction():
            await conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            locked.set()
            while not release.is_set():
                await asyncio.sleep(0.01)
        await conn.close()

    holder = threading.Thread(target=lambda: aio.run(hold_lock()))
    holder.start()
    assert locked.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join(10)


def waiting_on_lock(stack) -> int:
    """How many of the service's queries wait on a lock right now."""
    return db.fetchval(stack.database_url("admin"), "SELECT count(*) FROM pg_stat_activity "
                       "WHERE wait_event_type = 'Lock' AND application_name LIKE 'shop-users:%'")


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_sigterm_lets_an_in_flight_request_finish_then_closes_the_pool(own_stack):
    api = own_stack.url("users")
    user = httpx.post(f"{api}/users", json={"email": "slow@example.com", "name": "Slow"}).json()
    answers = {}
    with users_table_locked(own_stack) as release:
        request = threading.Thread(
            target=lambda: answers.setdefault("r", httpx.get(f"{api}/users/{user['id']}", timeout=20)))
        request.start()
        # The request is in flight once its query waits on our lock.
        assert wait_for(lambda: waiting_on_lock(own_stack) == 1)
        stopper = threading.Thread(target=lambda: own_stack.kill("users-1", signal="TERM"))
        stopper.start()
        # Draining: no new connections are accepted, the old request is still waiting.
        assert wait_for(lambda: _refused(f"{api}/health"))
        assert request.is_alive()
        release.set()
        request.join(20)
        stopper.join(20)
    assert answers["r"].status_code == 200 and answers["r"].json() == user
    log = own_stack.logs("users-1", tail=20)
    assert "pool closed" in log and "Finished server process" in log
    own_stack.start("users-1")


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return False
    except httpx.TransportError:
        return True


def test_lost_database_is_503_json_and_the_service_recovers(own_stack):
    api = own_stack.url("users")
    own_stack.kill("postgres", signal="KILL")
    try:
        ready = httpx.get(f"{api}/ready", timeout=10)
        read = httpx.get(f"{api}/users/1", timeout=10)
        assert ready.status_code == 503 and ready.json()["error"] == "not_ready"
        assert read.status_code == 503 and read.json()["error"] == "unavailable"
        assert httpx.get(f"{api}/health").status_code == 200, "liveness must not depend on the DB"
    finally:
        own_stack.start("postgres")
    assert wait_for(lambda: httpx.get(f"{api}/ready", timeout=5).status_code == 200, timeout=30)
    assert httpx.get(f"{api}/users/1", timeout=10).status_code in (200, 404)


def test_a_pool_exhausted_by_a_lock_answers_503_not_a_hang(own_stack):
    """Every pool connection stuck behind a lock: new requests give up after acquire_timeout_s."""
    api = own_stack.url("users")
    pool_max = httpx.get(f"{api}/stats").json()["pool"]["max_size"]
    with users_table_locked(own_stack):
        stuck = [threading.Thread(target=lambda: httpx.get(f"{api}/users/1", timeout=30)) for _ in range(pool_max)]
        for t in stuck:
            t.start()
        assert wait_for(lambda: waiting_on_lock(own_stack) == pool_max)
        started = time.monotonic()
        answer = httpx.get(f"{api}/users/1", timeout=30)
        waited = time.monotonic() - started
    for t in stuck:
        t.join(30)
    assert answer.status_code == 503 and answer.json()["error"] == "unavailable", answer.text
    assert waited < 10, "a request must not hang past the acquire timeout"
