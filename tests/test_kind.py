"""Lab 06's stack on a real kind cluster (``make test-kind``): nothing here is simulated.

Needs Docker, kind >= 0.30, kubectl and a node image for Kubernetes 1.34 (kind's official one,
or the one ``make kind-offline`` builds here, metrics-server inside it). Without them every
test skips naming the missing piece; under ``make test-kind`` (SCALELAB_REQUIRE_KIND=1, which
builds what is missing first) they fail instead. The solution
notebook 06 with RUNTIME="kind" runs from tests/test_notebooks.py (its `kind` parameter).
The cluster (``scalelab``) is created on first use and kept; each run gets its own namespace.
"""

import time

import httpx
import pytest

from conftest import unavailable
from scalelab import Stack
from scalelab.errors import RuntimeUnavailable, ScalelabError

pytestmark = pytest.mark.kind


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("kind-state")
    try:
        stack = Stack(lab=6, runtime="kind", state_dir=state)
    except RuntimeUnavailable as exc:
        unavailable("kind", exc)
    try:
        stack.up()
    except RuntimeUnavailable as exc:     # e.g. the metrics-server image is not on this host
        stack.down(purge=True)
        unavailable("kind", exc)
    yield stack
    stack.down(purge=True)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def test_lab06_comes_up_with_every_member_running_and_ready(stack):
    status = stack.status()
    assert set(status.member) == {"postgres", "users-1", "users-2", "redis-1", "nginx-1"}
    assert (status.state == "running").all(), status.to_string()
    assert stack.runtime.running_lab() == 6


def test_the_entry_url_is_the_nodeport_on_loopback_and_serves_users(stack):
    url = stack.url("users")
    assert url == "http://127.0.0.1:30080"
    seen = set()
    with httpx.Client(timeout=5) as client:
        for _ in range(40):
            answer = client.get(f"{url}/users", params={"limit": 1}, headers={"Connection": "close"})
            assert answer.status_code == 200, answer.text
            seen.add(answer.headers["x-instance"])
    members = set(stack.members("users"))      # each pod answers as the member name the driver told it
    assert seen <= members, f"answers came from {seen}, the members are {members}"
    assert len(seen) == 2, "nginx balances over both ready pods (resolved through the headless Service)"


def test_member_url_reaches_exactly_that_pod(stack):
    for member in stack.members("users"):
        answer = httpx.get(f"{stack.member_url(member)}/health", timeout=5)
        assert answer.status_code == 200
        assert answer.json()["instance"] == member     # the pod the driver named ``member``
        assert answer.headers["x-instance"] == member


def test_database_and_redis_answer_from_the_host(stack):
    import asyncpg
    import redis

    from scalelab import aio

    async def count_users():
        conn = await asyncpg.connect(stack.database_url("app"), timeout=10)
        try:
            return await conn.fetchval("SELECT count(*) FROM users")
        finally:
            await conn.close()

    assert aio.run(count_users()) >= 0
    client = redis.Redis.from_url(stack.redis_url(), socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_scale_out_and_in_waits_for_the_rollout(stack):
    stack.scale("users", 3)
    assert stack.members("users") == ["users-1", "users-2", "users-3"]
    assert (stack.status().state == "running").all()
    stack.scale("users", 2)
    assert len(stack.members("users")) == 2
    with pytest.raises(ScalelabError):
        stack.scale("postgres", 2)


def test_a_killed_pod_is_replaced_under_its_member_name(stack):
    before = stack.runtime.pod("users-1")
    stack.kill("users-1", "KILL")
    stack.start("users-1")                       # waits for the controller's replacement to be ready
    after = stack.runtime.pod("users-1")
    assert after != before, "a new pod runs as users-1"
    assert httpx.get(f"{stack.member_url('users-1')}/ready", timeout=5).status_code == 200
    assert httpx.get(f"{stack.url('users')}/health", timeout=5).status_code == 200


def test_a_restart_is_graceful_and_the_entry_keeps_answering(stack):
    failures = 0
    import threading
    done = threading.Event()

    def hammer():
        nonlocal failures
        # A new connection per request (scalelab.closedloop's reason): nginx's reload closes its old
        # workers' idle keep-alive connections, and a request sent on one at that instant fails in the
        # client — a client-side race real clients retry, not a request the stack dropped.
        with httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while not done.is_set():
                try:
                    if client.get(f"{stack.url('users')}/users", params={"limit": 1}).status_code >= 500:
                        failures += 1
                except httpx.HTTPError:
                    failures += 1

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        stack.restart("users")                  # every member, one by one
    finally:
        done.set()
        thread.join(timeout=10)
    assert failures == 0, f"{failures} requests failed while the pods were replaced one by one"


def test_metrics_server_reports_cpu_of_every_users_pod(stack):
    pods = {stack.runtime.pod(m) for m in stack.members("users")}
    measured = wait_until(lambda: (m := stack.runtime.pod_metrics("users")) and pods <= set(m) and m, 180,
                          "metrics.k8s.io lists every users pod")
    assert all(cores >= 0 for cores in measured.values())


def test_doctor_reports_the_cluster_and_metrics_flowing(stack):
    from scalelab.runtimes.kind.cluster import doctor_rows
    test_metrics_server_reports_cpu_of_every_users_pod(stack)     # (metrics are there by now)
    rows = {what: (status, detail) for status, what, detail in doctor_rows()}
    assert rows["kind node image"][0] == "ok"
    assert rows["kind cluster"][0] == "ok" and "nodes ready" in rows["kind cluster"][1]
    assert rows["metrics"][0] == "ok" and "CPU" in rows["metrics"][1], rows["metrics"]


def test_logs_come_from_the_members_pod(stack):
    assert "Uvicorn running on http://0.0.0.0:8000" in stack.logs("users-1", tail=200)


def test_down_deletes_the_namespace_and_keeps_the_cluster(tmp_path):
    try:
        other = Stack(lab=6, runtime="kind", state_dir=tmp_path)
    except RuntimeUnavailable as exc:
        unavailable("kind", exc)
    # (not brought up: lab 6's stack of this module holds the entry NodePort) — down() of a
    # stack that never ran is a no-op, twice.
    other.down()
    other.down()
    assert other.runtime.running_lab() is None
    assert other.runtime.cluster.exists()


def test_down_leaves_no_namespace_no_pod_container_no_forward_and_no_entry(stack):
    """``make down RUNTIME=kind``: the namespace, every container of its pods in the nodes, the
    port-forwards to single pods and the entry NodePort are gone (the cluster stays)."""
    import subprocess
    forwarded = stack.member_url("users-1")                   # opens a port-forward
    namespace = stack.runtime.namespace
    stack.down()
    assert not stack.runtime._namespace_exists()
    # The API forgets a pod once its containers stopped; each node's kubelet removes them right
    # after (its pod cleanup, asynchronous): bounded, not at once.
    from scalelab.waiting import wait_until

    def containers_left(node: str) -> str:
        out = subprocess.run(["docker", "exec", node, "crictl", "ps", "-a", "-q", "--label",
                              f"io.kubernetes.pod.namespace={namespace}"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
    for node in _cluster_nodes(stack.runtime.cluster.name):
        assert wait_until(lambda node=node: containers_left(node) == "", 60, interval=1), \
            f"{node} still has containers of {namespace} 60 s after its namespace was deleted"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{forwarded}/health", timeout=3)          # the forward's port is closed
    with pytest.raises(httpx.HTTPError):
        httpx.get("http://127.0.0.1:30080/health", timeout=3)  # no NodePort Service behind kind's mapping
    assert stack.runtime.cluster.exists()


def _cluster_nodes(cluster: str) -> list[str]:
    import subprocess
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.x-k8s.kind.cluster={cluster}",
                          "--format", "{{.Names}}"], capture_output=True, text=True, timeout=60)
    return out.stdout.split()
