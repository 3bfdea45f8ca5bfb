"""Lab 07's Prometheus on the compose runtime: a container from scalelab/prometheus (Debian's
package) scraping every shop container over the Compose network (runtimes/compose/prometheus.py);
and lab 07's stack keeping its promise when its broker container is SIGKILLed."""

import time

import pytest

from scalelab.labs import lab07
from scalelab.references import reference_file

from conftest import broker_kill_loses_no_accepted_order, solved_stack

pytestmark = pytest.mark.compose


c7 = solved_stack(7, "compose")


def scraped(stack) -> set[str]:
    return {m for s in ("users", "orders", "worker") for m in stack.members(s)}


def wait_targets(prom, expected: set[str], timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        targets = prom.targets()
        if set(targets.instance) == expected and (targets.health == "up").all():
            return targets
        assert time.monotonic() < deadline, f"targets never became {sorted(expected)} all up:\n{targets}"
        time.sleep(0.5)


def test_prometheus_scrapes_every_shop_container_by_its_name_on_the_network(c7):
    assert c7.members("prometheus") == ["prometheus-1"]
    prom = lab07.prometheus(c7)
    targets = wait_targets(prom, scraped(c7))
    assert targets.url.str.startswith("http://scalelab-").all()          # container names, not host ports
    assert not targets.url.str.contains("127.0.0.1").any()
    assert prom.value('count(up{job="shop"} == 1)') == len(scraped(c7))
    config = prom._get("/api/v1/status/config")["yaml"]
    assert "scrape_interval: 1s" in config and "/etc/scalelab-prometheus/targets.json" in config


def test_a_killed_worker_is_down_for_prometheus_then_up_again(c7):
    prom = lab07.prometheus(c7)
    wait_targets(prom, scraped(c7))
    c7.kill("worker-2")
    try:
        prom.wait_for(lambda p: p.value('up{instance="worker-2"}') == 0, timeout=20, what="worker-2 down")
    finally:
        c7.start("worker-2")
    prom.wait_for(lambda p: p.value('up{instance="worker-2"}') == 1, timeout=20, what="worker-2 up again")


def test_scaling_users_adds_and_removes_its_target(c7):
    prom = lab07.prometheus(c7)
    c7.scale("users", 3)
    try:
        wait_targets(prom, scraped(c7))
        assert "users-3" in set(prom.targets().instance)
    finally:
        c7.scale("users", 2)
    wait_targets(prom, scraped(c7))
    assert "users-3" not in set(prom.targets().instance)


def test_promtool_in_the_container_rejects_a_bad_rule_file_and_the_reference_loads(c7, tmp_path):
    bad = tmp_path / "alert_rules.yaml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(up[\n")
    problem = c7.runtime.check_alert_rules(bad)
    assert problem is not None and "parse error" in problem
    good = reference_file(lab07.alert_rules)
    assert c7.runtime.check_alert_rules(good) is None
    c7.runtime.install_alert_rules(good)
    prom = lab07.prometheus(c7)
    rules = prom.wait_for(lambda p: None if (r := p.rules()).empty else r, timeout=20, what="rules loaded")
    assert set(lab07.ALERTS) <= set(rules.name)
    c7.runtime.install_alert_rules(None)
    prom.wait_for(lambda p: p.rules().empty or None, timeout=20, what="rules removed")


def test_lab7s_rabbitmq_container_killed_under_load_loses_no_accepted_order(c7):
    drill = broker_kill_loses_no_accepted_order(c7)
    assert drill["during_outage"] > 0, "while RabbitMQ was down, orders were still accepted (the outbox)"
