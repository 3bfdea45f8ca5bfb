"""A real Kafka broker (stack/scalelab/kafka_broker.py) as a local process: formatted once, started,
probed, and durable across a SIGKILL for what it acknowledged — messages (acks=all) and a
consumer group's committed offsets. (A process crash, not a power cut: the kernel's page cache
survives it; Kafka does not fsync each write, it relies on replicas for that.)

Needs Java 17+ and the jars: stack/deploy/ensure-kafka.sh. Without them these tests skip, saying
so; with SCALELAB_REQUIRE_KAFKA set (CI) they fail instead.
"""

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from scalelab import kafka_broker
from scalelab.kafka_broker import Broker, KafkaUnavailable

REPO = Path(__file__).resolve().parents[1]
TOPIC, PARTITIONS, MESSAGES = "orders", 3, 1000
GROUP = "billing"


def unavailable(why: str):
    """Skip, naming the fix — or fail where Kafka must be there (SCALELAB_REQUIRE_KAFKA)."""
    (pytest.fail if os.environ.get("SCALELAB_REQUIRE_KAFKA") else pytest.skip)(f"kafka broker unavailable: {why}")


@pytest.fixture(scope="module")
def libs() -> Path:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        unavailable("no java on PATH and no JAVA_HOME — run stack/deploy/ensure-kafka.sh, it names the fix")
    try:
        return kafka_broker.jars()
    except KafkaUnavailable as exc:
        unavailable(str(exc))
        raise


@pytest.fixture(scope="module")
def kafka_client():
    try:
        import confluent_kafka
    except ImportError:
        unavailable("the Python client confluent-kafka is not installed — pip install -e '.[test]'")
    return confluent_kafka


@pytest.fixture
def broker(libs, tmp_path):
    broker = Broker(libs, tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.stop()                # SIGTERM, then SIGKILL after 30 s: no broker outlives its test
        assert broker.pid is None


# -- without a broker -------------------------------------------------------------------------------
def test_missing_jars_are_one_line_naming_ensure_kafka(tmp_path):
    with pytest.raises(KafkaUnavailable) as raised:
        kafka_broker.jars(tmp_path)
    message = str(raised.value)
    assert "stack/deploy/ensure-kafka.sh" in message and str(tmp_path) in message and "\n" not in message


def test_ready_is_false_where_nothing_listens_or_something_else_answers():
    port = kafka_broker.free_port()
    assert kafka_broker.ready(port, timeout=1) is False
    # A server that is not Kafka (it answers with garbage and hangs up) is not a ready broker either.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer_garbage():
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x00\x04HTTP")
        threading.Thread(target=answer_garbage, daemon=True).start()
        assert kafka_broker.ready(server.getsockname()[1], timeout=2) is False


def test_server_properties_are_a_one_node_kraft_cluster_on_loopback(tmp_path):
    lines = dict(line.split("=", 1) for line in kafka_broker.server_properties(tmp_path, 19092, 19093).splitlines()
                 if line and not line.startswith("#"))
    assert lines["process.roles"] == "broker,controller" and lines["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert lines["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert lines["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert lines["log.dirs"].startswith(str(tmp_path))
    assert lines["offsets.topic.replication.factor"] == lines["transaction.state.log.replication.factor"] == "1"
    assert lines["num.partitions"] == "3" and lines["group.initial.rebalance.delay.ms"] == "0"


def test_ensure_kafka_names_the_fix_when_java_is_too_old(tmp_path):
    fake = tmp_path / "old-java" / "bin"
    fake.mkdir(parents=True)
    (fake / "java").write_text("#!/bin/sh\necho '    java.specification.version = 11' >&2\n")
    (fake / "java").chmod(0o755)
    done = subprocess.run(["bash", str(REPO / "stack/deploy/ensure-kafka.sh")], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "JAVA_HOME": str(fake.parent),
                                           "SCALELAB_KAFKA_HOME": str(tmp_path / "home")})
    assert done.returncode == 1 and not (tmp_path / "home").exists()
    assert done.stderr.strip().count("\n") == 0
    assert "older than 17" in done.stderr and "openjdk-17-jre-headless" in done.stderr and "JAVA_HOME" in done.stderr


# -- a real broker ------------------------------------------------------------------------------------
def test_storage_is_formatted_once_with_a_cluster_id_kept_beside_the_data(libs, tmp_path):
    data = tmp_path / "kafka"
    kafka_broker.write_config(data, kafka_broker.free_port(), kafka_broker.free_port())
    assert kafka_broker.format_storage(libs, data) is True
    cluster = (data / "cluster.id").read_text().strip()
    assert f"cluster.id={cluster}" in (data / kafka_broker.LOG_DIR / "meta.properties").read_text()
    assert kafka_broker.format_storage(libs, data) is False           # formatted: left alone
    assert (data / "cluster.id").read_text().strip() == cluster


def test_acknowledged_messages_and_committed_offsets_survive_a_sigkilled_broker(broker, kafka_client):
    broker.start(timeout=90)
    assert kafka_broker.ready(broker.port)
    assert " INFO " in broker.log_file.read_text()
    assert " INFO " not in (broker.data_dir / "stdout.log").read_text(), "the broker logs to server.log only"

    create_topic(broker.bootstrap)
    acked = produce_keyed(broker.bootstrap)
    partitions_of_key: dict[str, set[int]] = {}
    for key, partition in acked:
        partitions_of_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_of_key.values()), "a key spread over partitions"
    assert len({p for _, p in acked}) == PARTITIONS

    # Consume them all in a group, then commit its offsets (synchronously: the commit is acknowledged).
    read = consume_all(broker.bootstrap, GROUP, MESSAGES, commit=True)
    assert sorted(int(v) for _, v in read) == list(range(MESSAGES))
    for key in {k for k, _ in read}:                                  # per key, in produced order
        values = [int(v) for k, v in read if k == key]
        assert values == sorted(values)
    committed = committed_offsets(broker.bootstrap, GROUP)
    assert sum(committed.values()) == MESSAGES

    # Crash: SIGKILL, no clean shutdown. Then the same data dir on the same ports.
    pid = broker.pid
    broker.kill()
    assert broker.pid is None and not pid_alive(pid)
    assert not kafka_broker.ready(broker.port, timeout=1)
    broker.start(timeout=90)

    assert committed_offsets(broker.bootstrap, GROUP) == committed
    # The group resumes after its committed offsets: nothing left to read.
    assert consume_all(broker.bootstrap, GROUP, 0, idle=3) == []
    # And every acknowledged message is still in the log: a new group reads all 1,000 again.
    again = consume_all(broker.bootstrap, "audit", MESSAGES)
    assert sorted(again) == sorted(read)


# -- helpers (every wait bounded) ---------------------------------------------------------------------
def wait_for(probe, timeout: float, failure: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(interval)
    pytest.fail(f"{failure} after {timeout:.0f} s")


def create_topic(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(30)
    wait_for(lambda: leaders(admin) == PARTITIONS, 30, f"{TOPIC}'s {PARTITIONS} partitions have no leader")


def produce_keyed(bootstrap: str) -> list[tuple[str, int]]:
    """Produce MESSAGES keyed messages; return (key, partition) of each the broker acknowledged
    with acks=all — all of them, or the test fails."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    acked: list[tuple[str, int]] = []
    failed: list = []

    def delivered(err, msg):
        if err is not None:
            failed.append(err)
        else:
            acked.append((msg.key().decode(), msg.partition()))
    for i in range(MESSAGES):
        producer.produce(TOPIC, key=f"user-{i % 50}", value=str(i), on_delivery=delivered)
    assert producer.flush(30) == 0 and not failed and len(acked) == MESSAGES, failed[:3]
    return acked


def leaders(admin) -> int:
    topic = admin.list_topics(TOPIC, timeout=5).topics.get(TOPIC)
    if topic is None or topic.error is not None:
        return 0
    return sum(1 for p in topic.partitions.values() if p.leader >= 0)


def consume_all(bootstrap: str, group: str, expected: int, commit: bool = False,
                timeout: float = 60, idle: float = 0) -> list[tuple[str, str]]:
    """Read ``expected`` messages in ``group`` from where it left off (else the earliest; bounded by
    timeout); with ``idle``, keep polling that long once all partitions are assigned and the
    expected messages read, to prove that nothing more arrives."""
    from confluent_kafka import Consumer
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    try:
        consumer.subscribe([TOPIC])
        read: list[tuple[str, str]] = []
        deadline = time.monotonic() + timeout
        while (len(read) < expected or len(consumer.assignment()) < PARTITIONS) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                assert msg.error() is None, msg.error()
                read.append((msg.key().decode(), msg.value().decode()))
        assert len(consumer.assignment()) == PARTITIONS, f"group {group} got no partitions within {timeout:.0f} s"
        quiet_until = time.monotonic() + idle
        while time.monotonic() < quiet_until:
            extra = [m for m in consumer.consume(500, 0.5) if m.error() is None]
            read.extend((m.key().decode(), m.value().decode()) for m in extra)
        assert len(read) == expected, f"group {group} read {len(read)} of {expected} messages"
        if commit:
            consumer.commit(asynchronous=False)
        return read
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, timeout: float = 30) -> dict[int, int]:
    """The group's committed offset per partition. Just after a (re)start the group's coordinator
    may still be loading __consumer_offsets: those answers are retried, within timeout."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    loading = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
               KafkaError.COORDINATOR_NOT_AVAILABLE}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        wanted = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        deadline = time.monotonic() + timeout
        while True:
            try:
                return {tp.partition: tp.offset for tp in consumer.committed(wanted, timeout=10)}
            except KafkaException as exc:
                if exc.args[0].code() not in loading or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
