"""Lab 08's Kafka broker on the kind cluster (``make test-kind``): a StatefulSet member like the others.

It starts on demand (0 replicas until scaled), the driver reaches it on the port it advertises
(a port-forward that always listens where the broker says it is), a SIGKILLed broker comes back
with every message it acknowledged and the same address, and the relay and the projector are
moved onto it and off it again under their member names. The notebook's Kafka steps on kind run
from tests/test_notebooks.py (lab 08's `kind` parameter).
"""

import uuid

import pytest

from conftest import unavailable
from scalelab import Stack
from scalelab.errors import RuntimeUnavailable
from scalelab.references import solve

pytestmark = [pytest.mark.kind, pytest.mark.kind_sweep]


@pytest.fixture(scope="module")
def lab8(tmp_path_factory):
    try:
        stack = Stack(lab=8, runtime="kind", state_dir=tmp_path_factory.mktemp("kind-kafka"))
    except RuntimeUnavailable as exc:
        unavailable("kind", exc)
    solve(stack)
    stack.up()
    yield stack
    stack.down(purge=True)


def _client_config(stack) -> dict:
    return {"bootstrap.servers": stack.kafka_bootstrap(), "log_level": 2}


def _bootstrap_env(stack, service: str) -> str | None:
    deployment = stack.runtime.apps.read_namespaced_deployment(service, stack.runtime.namespace)
    env = deployment.spec.template.spec.containers[0].env or []
    return next((e.value for e in env if e.name == "SHOP_KAFKA_BOOTSTRAP"), None)


def _joined(stack) -> str | None:
    """What projector-1's newest pod consumes, by the last line it logged on joining."""
    for line in reversed(stack.logs("projector-1", tail=400).splitlines()):
        if "member of Kafka group" in line:
            return "kafka"
        if "pending entries reclaimed" in line:
            return "stream"
    return None


def test_the_broker_starts_on_demand_and_advertises_the_port_the_driver_forwards(lab8):
    assert lab8.members("kafka") == []
    with pytest.raises(RuntimeUnavailable, match=r"use_kafka"):
        lab8.kafka_bootstrap()
    lab8.scale("kafka", 1)
    assert lab8.members("kafka") == ["kafka-1"]
    from confluent_kafka.admin import AdminClient
    admin = AdminClient(_client_config(lab8))
    brokers = admin.list_topics(timeout=20).brokers
    assert [f"{b.host}:{b.port}" for b in brokers.values()] == [lab8.kafka_bootstrap()]


def test_a_sigkilled_broker_keeps_what_it_acknowledged_and_its_address(lab8):
    from confluent_kafka import Consumer, Producer
    topic, sent = f"scratch-{uuid.uuid4().hex[:8]}", [f"m{i}".encode() for i in range(20)]
    producer = Producer({**_client_config(lab8), "acks": "all", "enable.idempotence": True})
    for value in sent:
        producer.produce(topic, value)
    assert producer.flush(30) == 0, "every message acknowledged before the kill"
    before = lab8.kafka_bootstrap()
    lab8.kill("kafka-1")
    status = lab8.status()
    assert dict(zip(status.member, status.state))["kafka-1"] == "stopped"
    lab8.start("kafka-1")
    assert lab8.kafka_bootstrap() == before
    reader = Consumer({**_client_config(lab8), "group.id": f"t-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    reader.subscribe([topic])
    got: list[bytes] = []
    try:
        for _ in range(60):
            got += [m.value() for m in reader.consume(num_messages=50, timeout=1) if not m.error()]
            if len(got) >= len(sent):
                break
    finally:
        reader.close()
    assert got == sent


def test_the_event_log_moves_onto_the_broker_and_back_under_the_same_member_names(lab8):
    lab8.reconnect_event_log()
    assert _bootstrap_env(lab8, "relay") == _bootstrap_env(lab8, "projector") == "kafka:9092"
    assert lab8.members("relay") == ["relay-1"] and lab8.members("projector") == ["projector-1"]
    assert _joined(lab8) == "kafka"
    lab8.scale("kafka", 0)
    lab8.reconnect_event_log()
    assert _bootstrap_env(lab8, "relay") is None and _bootstrap_env(lab8, "projector") is None
    assert _joined(lab8) == "stream"
