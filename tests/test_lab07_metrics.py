"""Lab 07 part 1 on a real stack: /metrics, request ids in JSON logs, Prometheus, alert rules, dashboard."""

import json
import time
import uuid

import httpx
import pytest

from scalelab import Stack
from scalelab.errors import RuntimeUnavailable
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import lab07
from scalelab.paths import REPO
from scalelab.promql import PromQLError

from conftest import solved_stack

DASHBOARD = REPO / "stack/deploy/grafana/dashboards/shop.json"


lab7 = solved_stack(7)   # Postgres + standby, Redis, 2 users, nginx, orders, 2 workers, Prometheus


@pytest.fixture(scope="module")
def buyer(lab7) -> int:
    r = httpx.post(f"{lab7.url('users')}/users", json=lab07.new_user(), timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_metrics_expose_route_templates_status_pool_cache_queue_and_task_families(lab7, buyer):
    api = lab7.url("users")
    for _ in range(3):
        assert httpx.get(f"{api}/users/{buyer}", timeout=10).status_code == 200
    order = httpx.post(f"{lab7.url('orders')}/orders", timeout=10,
                       json={"user_id": buyer, "items": [{"sku": "pen", "quantity": 1, "price_cents": 100}]})
    assert order.status_code == 202, order.text
    users = "\n".join(line for m in lab7.members("users") for line in lab07.metric_lines(lab7, m, "http_", "db_", "cache_"))
    # the route template, never the raw id: one series for every user
    assert 'route="/users/{user_id}"' in users and f'/users/{buyer}"' not in users
    assert 'http_request_duration_seconds_bucket{' in users and 'status="200"' in users
    assert 'db_pool_connections{pool="primary",state="in_use"}' in users and "db_pool_max_connections" in users
    assert 'cache_requests_total{cache="user",result="hit"}' in users     # 3 reads of one user: cached
    deadline = time.monotonic() + 20
    while httpx.get(f"{lab7.url('orders')}/orders/{order.json()['id']}", timeout=10).json()["status"] != "done":
        assert time.monotonic() < deadline, "the order was not processed in 20 s"
        time.sleep(0.2)
    orders = "\n".join(lab07.metric_lines(lab7, "orders-1", "orders_", 'http_requests_total'))
    assert 'orders_queue_depth{queue="orders"} 0.0' in orders and 'orders_by_status{status="done"}' in orders
    assert 'route="/orders"' in orders and 'status="202"' in orders
    tasks = "\n".join(line for m in lab7.members("worker") for line in lab07.metric_lines(lab7, m, "celery_", "process_cpu"))
    assert 'celery_tasks_total{outcome="processed",task="shop.process_order"}' in tasks
    assert "celery_task_duration_seconds_bucket" in tasks and "process_cpu_seconds_total" in tasks


def test_request_id_goes_through_nginx_to_a_replica_and_from_orders_to_a_worker(lab7, buyer):
    rid = f"test-{uuid.uuid4().hex[:12]}"
    r = httpx.get(f"{lab7.url('users')}/users/{buyer}", headers={"X-Request-ID": rid}, timeout=10)
    assert r.headers["x-request-id"] == rid and r.headers.get_list("x-request-id") == [rid]
    replica = r.headers["x-instance"]
    time.sleep(0.3)   # nginx writes its access line after the response
    (nginx_line,) = lab07.json_lines(lab7, "nginx-1", rid)
    (replica_line,) = lab07.json_lines(lab7, replica, rid)
    assert nginx_line["status"] == 200 and replica_line["route"] == "/users/{user_id}"
    assert set(replica_line) >= {"ts", "level", "service", "instance", "request_id", "method", "route", "status", "ms"}
    # nginx makes one when the client sends none, and the replica sees the same one
    fresh = httpx.get(f"{lab7.url('users')}/users/{buyer}", timeout=10)
    assert len(fresh.headers["x-request-id"]) == 32
    # orders -> Celery task headers -> the worker's log line
    rid = f"order-{uuid.uuid4().hex[:12]}"
    order = httpx.post(f"{lab7.url('orders')}/orders", headers={"X-Request-ID": rid}, timeout=10,
                       json={"user_id": buyer, "items": [{"sku": "ink", "quantity": 1, "price_cents": 100}]})
    assert order.status_code == 202 and order.headers["x-request-id"] == rid
    deadline, worker_lines = time.monotonic() + 20, []
    while not worker_lines:
        assert time.monotonic() < deadline, "no worker logged the order's request id within 20 s"
        worker_lines = [line for m in lab7.members("worker") for line in lab07.json_lines(lab7, m, rid)]
        time.sleep(0.2)
    assert worker_lines[0]["args"] == [order.json()["id"]] and worker_lines[0]["outcome"] == "processed"


def test_prometheus_scrapes_every_member_and_follows_a_scale_out(lab7):
    prom = lab07.prometheus(lab7)
    members = {m for s in ("users", "orders", "worker") for m in lab7.members(s)}

    def all_up(p, wanted):
        t = p.targets()
        return t if set(t.instance) == wanted and (t.health == "up").all() else None

    prom.wait_for(lambda p: all_up(p, members), timeout=20, what=f"every member up: {sorted(members)}")
    lab7.scale("users", 3)
    try:
        prom.wait_for(lambda p: all_up(p, members | {"users-3"}), timeout=30, what="users-3 scraped")
        assert prom.value('count(up{job="shop", service="users"} == 1)') == 3
    finally:
        lab7.scale("users", 2)
    prom.wait_for(lambda p: all_up(p, members), timeout=30, what="users-3 gone from the targets")


def test_alert_rules_check_says_not_attempted_invalid_or_always_firing(lab7):
    path = lab7.workspace / "alert_rules.yaml"
    reference = path.read_text()
    try:
        path.write_text("groups:\n  - name: shop\n    rules:\n# YOUR CODE HERE\n")
        with pytest.raises(NotAttempted, match="not attempted yet"):
            lab07.alert_rules.check(lab7)
        path.write_text(reference.replace("rate(process_cpu_seconds_total", "rate(process_cpu_seconds_total{"))
        with pytest.raises(CheckFailed, match="promtool rejects"):
            lab07.alert_rules.check(lab7)
        path.write_text(reference.replace("[10s]) > 0.5", "[10s]) >= 0"))   # fires on an idle stack
        with pytest.raises(CheckFailed, match="on a quiet stack HighCpu is already"):
            lab07.alert_rules.check(lab7)
    finally:
        path.write_text(reference)


def test_alert_rules_reference_stays_quiet_then_each_alert_fires_under_its_fault(lab7):
    lab07.alert_rules.check(lab7)
    took = lab07.drill["took_s"]
    assert set(took) == {"HighCpu", "HighLatency", "HighErrorRate"}
    # the stack is whole again after the drill (Postgres restarted)
    r = httpx.post(f"{lab7.url('users')}/users", json=lab07.new_user(), timeout=10)
    assert r.status_code == 201, r.text


def test_dashboard_panels_use_the_notebook_promql_and_each_is_valid_on_the_real_prometheus(lab7):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert exprs == list(lab07.EXPRS.values())
    prom = lab07.prometheus(lab7)
    for expr in exprs:
        prom.query(expr)   # raises PromQLError on anything Prometheus rejects
    with pytest.raises(PromQLError, match="parse"):
        prom.query("sum(rate(http_requests_total[10s])")


def test_lab7_without_a_prometheus_binary_fails_in_one_line_before_anything_starts(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_BIN", str(tmp_path / "no-prometheus"))
    stack = Stack(lab=7, state_dir=tmp_path)
    with pytest.raises(RuntimeUnavailable, match="PROMETHEUS_BIN") as raised:
        stack.up()
    assert "\n" not in str(raised.value)
    assert stack.status().empty   # nothing was started
    stack.down(purge=True)


def test_purge_deletes_what_prometheus_stored(tmp_path):
    series = tmp_path / "local/prometheus/prometheus-1/data/wal"
    series.mkdir(parents=True)
    (series / "00000000").write_bytes(b"samples")
    Stack(lab=7, state_dir=tmp_path).down(purge=True)
    assert not (tmp_path / "local/prometheus").exists()


def test_a_request_id_from_outside_is_kept_only_when_short_printable_ascii():
    from shop.logs import REQUEST_ID, clean_request_id, outgoing_headers
    assert clean_request_id(b"abc-123") == "abc-123"
    for bad in ("x" * 201, "two words", "line\nbreak", "", None):
        replaced = clean_request_id(bad)
        assert replaced != bad and len(replaced) == 32
    token = REQUEST_ID.set("abc-123")
    try:
        assert outgoing_headers() == {"X-Request-ID": "abc-123"}
    finally:
        REQUEST_ID.reset(token)
    assert outgoing_headers() == {}


def test_grafana_provisioning_points_at_the_dashboard_and_its_datasource():
    import yaml
    grafana = REPO / "stack/deploy/grafana"
    source = yaml.safe_load((grafana / "provisioning/datasources/prometheus.yaml").read_text())["datasources"][0]
    provider = yaml.safe_load((grafana / "provisioning/dashboards/shop.yaml").read_text())["providers"][0]
    dashboard = json.loads(DASHBOARD.read_text())
    assert source["type"] == "prometheus" and provider["type"] == "file"
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]} and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
