"""Lab 02's nginx: config rendering, the entry point, reloads on scale, failover under load."""

import re
import time
import uuid
from collections import Counter

import httpx
import psutil
import pytest

from scalelab import Stack
from scalelab.labs import lab02
from scalelab.runtimes.common.nginx import ConfigRejected
from scalelab.runtimes.local import nginx as local_nginx


def rendered(stack) -> str:
    return (local_nginx.home(stack.runtime, "nginx-1") / "nginx.conf").read_text()


def upstream_servers(stack) -> list[str]:
    return re.findall(r"^\s*server (127\.0\.0\.1:\d+)", rendered(stack), flags=re.M)


def member_ports(stack) -> list[str]:
    return [stack.member_url(m).removeprefix("http://") for m in stack.members("users")]


def test_address_lines_are_repeated_once_per_replica_and_the_rest_kept():
    text = "upstream users {\n    server {address} max_fails=1;\n    keepalive 16;\n}\nproxy_read_timeout 2s;\n"
    out = local_nginx.expand(text, ["127.0.0.1:1001", "127.0.0.1:1002"])
    assert out.splitlines() == ["    upstream users {",
                                "        server 127.0.0.1:1001 max_fails=1;",
                                "        server 127.0.0.1:1002 max_fails=1;",
                                "        keepalive 16;", "    }", "    proxy_read_timeout 2s;"]


def test_nginx_runs_from_the_state_dir_on_loopback_with_one_worker(lab2):
    config, rec = rendered(lab2), lab2.runtime.procs["nginx-1"]
    home = local_nginx.home(lab2.runtime, "nginx-1")
    assert rec.argv[1:5] == ["-p", f"{home}/", "-c", "nginx.conf"]
    assert f"listen 127.0.0.1:{rec.port};" in config
    assert "daemon off;" in config and "worker_processes 1;" in config
    assert f"pid {home}/nginx.pid;" in config
    assert upstream_servers(lab2) == member_ports(lab2)
    assert len(psutil.Process(rec.pid).children()) == 1


def test_url_is_nginx_and_member_url_reaches_one_replica(lab2):
    assert lab2.url("users") == lab2.member_url("nginx-1")
    for member in lab2.members("users"):
        assert httpx.get(f"{lab2.member_url(member)}/health").headers["x-instance"] == member


def test_round_robin_spreads_requests_evenly(lab2):
    with httpx.Client(base_url=lab2.url("users")) as client:
        seen = Counter(client.get("/health").headers["x-instance"] for _ in range(30))
    assert seen == {"users-1": 10, "users-2": 10, "users-3": 10}


def test_errors_nginx_makes_itself_are_json(lab2):
    too_big = httpx.post(f"{lab2.url('users')}/users", content=b"x" * 2_000_000,
                         headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"


def test_a_rejected_upstream_names_nginx_complaint_and_keeps_serving(lab2):
    path = lab2.workspace / "upstream.conf"
    good = path.read_text()
    path.write_text(good.replace("keepalive 16;", "keepalive sixteen;"))
    try:
        with pytest.raises(ConfigRejected, match=r"nginx rejected upstream.conf: .*keepalive sixteen"):
            lab2.reload("nginx")
        assert httpx.get(f"{lab2.url('users')}/health").status_code == 200
    finally:
        path.write_text(good)
        lab2.reload("nginx")


def test_until_the_exercise_is_written_nginx_answers_501_json(lab2):
    path = lab2.workspace / "upstream.conf"
    good = path.read_text()
    path.write_text("upstream users {\n    # YOUR CODE HERE\n}\n")
    try:
        lab2.restart("nginx")
        answer = httpx.get(f"{lab2.url('users')}/users/1")
        assert answer.status_code == 501 and answer.json()["error"] == "exercise_not_done"
        assert "stub" in answer.json()["detail"]
    finally:
        path.write_text(good)
        lab2.restart("nginx")
    assert httpx.get(f"{lab2.url('users')}/health").status_code == 200


def test_scaling_rewrites_the_upstream_and_reloads_without_a_failed_request(lab2):
    seen_servers = []

    def scale_in_and_out():
        for n in (2, 3):
            lab2.scale("users", n)
            seen_servers.append(len(upstream_servers(lab2)))

    result = lab02.load_during(lab2.url("users"), scale_in_and_out, at_s=0.5, paths=["/health"],
                               users=16, duration=5, label="scale under load")
    assert seen_servers == [2, 3]
    assert upstream_servers(lab2) == member_ports(lab2)
    assert result.failures == 0 and result.requests > 100, result.status_counts


def test_a_killed_replica_costs_no_failed_get_because_nginx_retries(lab2):
    user = httpx.post(f"{lab2.url()}/users", json={"email": f"k-{uuid.uuid4().hex[:8]}@example.com", "name": "K"})
    path, started = f"/users/{user.json()['id']}", time.time()
    try:
        result = lab02.load_during(lab2.url("users"), lambda: lab2.kill("users-2"), at_s=1.0, paths=[path],
                                   users=16, duration=3, label="kill")
    finally:
        lab2.start("users-2")
    assert result.failures == 0 and result.requests > 100, result.status_counts
    trace = lab02.nginx_trace(lab2, since=started)
    assert trace.retried.sum() >= 1 and (trace.status < 500).all(), trace


def test_a_sigterm_rolling_restart_of_every_replica_fails_no_request(lab2):
    before = lab2.status().set_index("member").pid
    result = lab02.load_during(lab2.url("users"), lambda: lab2.restart("users"), at_s=0.5, paths=["/health"],
                               users=16, duration=12, label="rolling restart")
    after = lab2.status().set_index("member").pid
    changed = [m for m in lab2.members("users") if before[m] != after[m]]
    assert changed == ["users-1", "users-2", "users-3"]
    assert result.failures == 0, result.status_counts
    assert set(result.instances) == set(changed)


def test_down_stops_nginx_its_workers_and_every_replica(tmp_path):
    stack = Stack(lab=2, state_dir=tmp_path).up()
    master = psutil.Process(stack.runtime.procs["nginx-1"].pid)
    processes = [master, *master.children()] + [psutil.Process(p) for p in stack.status().pid]
    stack.down(purge=True)
    gone, alive = psutil.wait_procs(processes, timeout=5)
    assert not alive
