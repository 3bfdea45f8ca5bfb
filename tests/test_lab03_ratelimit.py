"""Lab 03's rate limiter: one counter per client in Redis, shared by every replica."""

import concurrent.futures as cf
import itertools
import time
import uuid

import httpx
import pytest

from scalelab.labs import lab03
from shop.ratelimit import client_identity


@pytest.fixture
def limits(lab3):
    stats = httpx.get(f"{lab3.member_url('users-1')}/stats", timeout=10).json()["rate_limit"]
    assert stats["enabled"], stats
    return stats["limit"], stats["window_s"]


def new_client() -> dict:
    return {"X-Client-Id": f"t-{uuid.uuid4().hex[:10]}"}


def test_past_the_limit_is_429_with_retry_after_and_a_json_body(lab3, limits):
    limit, window = limits
    headers = new_client()
    with httpx.Client(base_url=lab3.member_url("users-1"), headers=headers, timeout=10) as api:
        codes = [api.get("/users?limit=1").status_code for _ in range(limit)]
        refused = api.get("/users?limit=1")
    assert codes == [200] * limit
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= window
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"] == "rate_limited" and set(refused.json()) == {"error", "detail"}
    assert refused.headers["x-instance"] == "users-1"


def test_the_limit_is_global_across_replicas_not_per_replica(lab3, limits):
    limit, window = limits
    for _ in range(3):   # the proof needs all requests inside one window: a busy machine may need another go
        headers, members = new_client(), itertools.cycle(lab3.members("users"))
        started = time.monotonic()
        codes = [httpx.get(f"{lab3.member_url(next(members))}/users?limit=1", headers=headers, timeout=10).status_code
                 for _ in range(limit + 10)]
        if time.monotonic() - started < window:
            break
    else:
        pytest.fail(f"{limit + 10} sequential requests never fit in one {window} s window")
    # Per-replica counters would have allowed all of them (each replica saw fewer than the limit).
    assert codes.count(200) == limit, codes


def test_concurrent_requests_on_all_replicas_never_exceed_the_limit(lab3, limits):
    limit, window = limits
    for _ in range(3):   # the proof needs the burst inside one window: a busy machine may need another go
        headers = new_client()
        started = time.monotonic()
        # All replicas at once: one burst per replica, in parallel threads.
        with cf.ThreadPoolExecutor(3) as pool:
            frames = list(pool.map(lambda m: lab03.fire(f"{lab3.member_url(m)}/users?limit=1", 2 * limit, headers,
                                                        concurrency=2 * limit), lab3.members("users")))
        if time.monotonic() - started < window:
            break
    else:
        pytest.fail(f"{6 * limit} concurrent requests never fit in one {window} s window")
    allowed = sum(int((f.status == 200).sum()) for f in frames)
    refused = sum(int((f.status == 429).sum()) for f in frames)
    assert refused + allowed == 6 * limit
    assert allowed == limit, f"{allowed} allowed of {6 * limit} concurrent requests, limit {limit}"


def test_through_nginx_one_client_gets_exactly_the_limit_from_all_replicas_together(lab3, limits):
    limit, _ = limits
    assert lab3.url("users") not in {lab3.member_url(m) for m in lab3.members("users")}, "nginx fronts the replicas"
    frame = lab03.fire(f"{lab3.url('users')}/users?limit=1", 3 * limit, new_client(), concurrency=3 * limit)
    assert (frame.status == 200).sum() == limit and (frame.status == 429).sum() == 2 * limit
    assert frame.instance.nunique() == 3


def test_clients_are_counted_separately(lab3, limits):
    limit, _ = limits
    first, second = new_client(), new_client()
    url = f"{lab3.member_url('users-2')}/users?limit=1"
    assert (lab03.fire(url, limit + 5, first).status == 429).sum() == 5
    assert httpx.get(url, headers=second, timeout=10).status_code == 200


def test_after_retry_after_the_client_is_allowed_again(lab3, limits):
    limit, window = limits
    headers = new_client()
    url = f"{lab3.member_url('users-3')}/users?limit=1"
    frame = lab03.fire(url, limit + 1, headers)
    wait = int(frame[frame.status == 429].retry_after.iloc[0])
    refused_at = time.monotonic()
    deadline = refused_at + window + 2
    while (status := httpx.get(url, headers=headers, timeout=10).status_code) == 429 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200
    assert time.monotonic() - refused_at <= wait + 1


def test_the_counter_key_expires(lab3, limits):
    _, window = limits
    headers = new_client()
    httpx.get(f"{lab3.member_url('users-1')}/users?limit=1", headers=headers, timeout=10)
    assert 0 < lab03.redis_client(lab3).ttl(f"ratelimit:key:{headers['X-Client-Id']}") <= window


def test_requests_without_a_client_id_and_probes_are_not_metered(lab3, limits):
    limit, _ = limits
    base = lab3.member_url("users-1")
    assert [httpx.get(f"{base}/users?limit=1", timeout=10).status_code for _ in range(limit + 5)] == [200] * (limit + 5)
    headers = new_client()
    lab03.fire(f"{base}/users?limit=1", limit + 1, headers)
    assert httpx.get(f"{base}/health", headers=headers, timeout=10).status_code == 200
    assert httpx.get(f"{base}/ready", headers=headers, timeout=10).status_code == 200


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "semi;colon", ""])
def test_a_malformed_client_id_is_400_json(lab3, bad):
    got = httpx.get(f"{lab3.member_url('users-1')}/users?limit=1", headers={"X-Client-Id": bad}, timeout=10)
    assert got.status_code == 400 and got.json()["error"] == "bad_request"


def test_redis_down_the_limiter_fails_open(lab3, limits):
    limit, _ = limits
    lab3.kill("redis-1")
    try:
        frame = lab03.fire(f"{lab3.member_url('users-1')}/users?limit=1", 2 * limit, new_client())
    finally:
        lab3.start("redis-1")
    assert (frame.status == 200).all()


def test_client_identity_prefers_the_api_key_then_the_ip_nginx_forwards():
    scope = {"headers": [(b"x-client-id", b"abc"), (b"x-real-ip", b"10.0.0.7")], "client": ("127.0.0.1", 5000)}
    assert client_identity(scope, by_ip=True) == "key:abc"
    scope["headers"] = [(b"x-real-ip", b"10.0.0.7")]
    assert client_identity(scope, by_ip=True) == "ip:10.0.0.7"
    assert client_identity(scope, by_ip=False) is None
    scope["headers"] = []
    assert client_identity(scope, by_ip=True) == "ip:127.0.0.1"
