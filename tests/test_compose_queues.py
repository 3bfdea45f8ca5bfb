"""Labs 05 and 08's members on the compose runtime: the order service, Celery workers, the
relay and the projector as containers (compose.yaml; readiness in runtimes/compose/queue.py),
and the broker they keep their promise on (the rabbitmq container)."""

import httpx
import pytest
import redis

from scalelab import broker
from scalelab.labs import lab05, lab08
from scalelab.references import solve
from scalelab.runtimes.compose import queue as compose_queue

from conftest import broker_kill_loses_no_accepted_order, solved_stack

pytestmark = pytest.mark.compose

c8 = solved_stack(8, "compose")   # every member this module tests: orders, worker, relay, projector
c5 = solved_stack(5, "compose")   # payment calls of 0.5 s, so a worker is caught holding one


@pytest.fixture
def orders_api(c5):
    with httpx.Client(base_url=c5.url("orders"), timeout=10) as client:
        yield client


def announced(stack, member: str) -> str | None:
    client = redis.Redis.from_url(stack.redis_url(), decode_responses=True)
    try:
        return client.hget(*compose_queue.announcement(member))
    finally:
        client.close()


def test_the_queue_and_event_members_run_as_containers_named_like_local(c8):
    status = c8.status().set_index("member")
    for member in ("orders-1", "worker-1", "relay-1", "projector-1"):
        assert status.state[member] == "running", member
    # The relay and the projector listen on nothing; orders and the worker's metrics are published.
    assert status.port[["relay-1", "projector-1"]].isna().all()
    assert httpx.get(f"{c8.runtime.member_url('orders-1')}/ready", timeout=5).status_code == 200
    assert "worker-1@scalelab ready" in c8.logs("worker-1", 200)   # the Celery hostname is the member name
    for member in ("worker-1", "relay-1", "projector-1"):
        pid = announced(c8, member)
        assert pid is not None and int(pid) in compose_queue.namespace_pids(c8.runtime._container(member)), member


def test_a_stale_announcement_does_not_make_a_restarted_worker_ready(c5):
    c5.kill("worker-1", "KILL")
    assert announced(c5, "worker-1") is not None          # a killed worker cannot take its entry back
    client = redis.Redis.from_url(c5.redis_url(), decode_responses=True)
    client.hset(*compose_queue.announcement("worker-1"), "424242")   # a previous incarnation's pid
    client.close()
    c5.start("worker-1")                                  # returns once the NEW incarnation announced itself
    pid = announced(c5, "worker-1")
    assert pid != "424242" and int(pid) in compose_queue.namespace_pids(c5.runtime._container("worker-1"))


def test_a_worker_killed_mid_task_on_compose_loses_no_order(c5, orders_api):
    user = lab05.new_user(c5, "Compose Buyer")
    c5.scale("worker", 2)
    ids = [lab05.place(orders_api, user)["id"] for _ in range(10)]
    held = lab05.kill_mid_task(c5, "worker-1", tries=5)
    done = lab05.wait_orders(c5, ids, timeout=60)
    assert done.status.tolist() == ["done"] * len(ids) and lab05.effects(c5, ids) == len(ids)
    held_deliveries = lab05.deliveries(c5, [held])
    assert len(held_deliveries) >= 2 and held_deliveries.finished_at.isna().iloc[0]
    c5.start("worker-1")
    c5.scale("worker", 1)


def test_a_terminated_worker_container_finishes_its_order_before_it_exits(c5, orders_api):
    user = lab05.new_user(c5, "Compose Buyer")
    c5.scale("worker", 1)
    ids = [lab05.place(orders_api, user)["id"] for _ in range(6)]
    running = lab05.wait_holding(c5, "worker-1")
    c5.kill("worker-1", "TERM")                          # docker-init forwards it: Celery's warm shutdown
    by_worker1 = lab05.deliveries(c5, ids).query("worker == 'worker-1@scalelab'")
    assert running in by_worker1.order_id.tolist() and by_worker1.finished_at.notna().all()
    assert announced(c5, "worker-1") is None             # it said goodbye in the broker
    c5.start("worker-1")
    assert (lab05.wait_orders(c5, ids, timeout=30).status == "done").all() and lab05.effects(c5, ids) == len(ids)


def test_the_projector_killed_on_compose_catches_up_as_a_new_consumer(c8):
    ids = lab08.place_orders(c8, 10)
    lab08.wait_orders(c8, ids)
    lab08.wait_caught_up(c8)
    before = {c["name"] for c in lab08.redis_client(c8).xinfo_consumers(lab08.STREAM, lab08.GROUP)}
    c8.kill("projector-1", "KILL")
    more = lab08.place_orders(c8, 10)                    # the relay keeps publishing while it is dead
    lab08.wait_orders(c8, more)
    lab08.wait_relayed(c8)
    c8.start("projector-1")
    lab08.wait_caught_up(c8)
    after = {c["name"] for c in lab08.redis_client(c8).xinfo_consumers(lab08.STREAM, lab08.GROUP)}
    assert len(after) == 1 and not after & before, (before, after)   # same pid in the container, new consumer
    assert lab08.dump_read_model(c8) == lab08.expected_read_model(c8)


@pytest.mark.parametrize("lab", [5, 8])
def test_the_rabbitmq_container_killed_under_load_loses_no_accepted_order(c5, c8, lab):
    stack = {5: c5, 8: c8}[lab]
    assert broker.settings(stack).broker == "rabbitmq" and stack.status().set_index("member").state["rabbitmq-1"] == "running"
    stack.scale("worker", 2)
    broker_kill_loses_no_accepted_order(stack)
    stack.scale("worker", 1)


def test_the_redis_container_keeps_the_append_only_settings_broker_yaml_gives_it(c5):
    try:
        broker.apply(c5, "broker: redis\nappendonly: yes\nappendfsync: always\n", workers=0)
        client = redis.Redis.from_url(c5.redis_url(), decode_responses=True)
        assert client.config_get("append*").items() >= {"appendonly": "yes", "appendfsync": "always"}.items()
        user = lab05.new_user(c5, "AOF Buyer")
        with httpx.Client(base_url=c5.url("orders"), timeout=10) as api:
            ids = [lab05.place(api, user)["id"] for _ in range(5)]
        c5.kill("redis-1", "KILL")
        c5.start("redis-1")                                  # the same container: its append-only file replayed
        assert lab05.queue_depth(c5) == 5
        c5.scale("worker", 1)
        assert (lab05.wait_orders(c5, ids, timeout=60).status == "done").all()
    finally:
        solve(c5)                                            # the reference broker.yaml: RabbitMQ with confirms
        broker.apply(c5, workers=1)


def test_lab_08_moves_its_log_onto_a_kafka_container_and_loses_nothing_when_it_is_killed(c8):
    """Last in this module: the move changes c8 for good (the relay and the projector on the topic)."""
    from scalelab import kafka_broker
    try:
        kafka_broker.jars()
    except kafka_broker.KafkaUnavailable as exc:
        pytest.fail(f"make test-compose needs the broker's jars to build the kafka image: {exc}")
    assert lab08.use_kafka(c8) is True
    status = c8.status().set_index("member")
    assert status.state["kafka-1"] == "running" and c8.kafka_bootstrap().startswith("127.0.0.1:")
    drill = lab08.kill_drill(c8, n=15)
    assert drill["log"] == "Kafka topic" and drill["skipped"] >= 10
    outage = lab08.broker_drill(c8, n=5)   # SIGKILL of the container; every event reaches the topic after
    assert outage["waiting_in_outbox"] > 0 and outage["topic_after"] >= outage["topic_before"] + outage["events"]
    assert lab08.backlog(c8)["lag"] == 0
