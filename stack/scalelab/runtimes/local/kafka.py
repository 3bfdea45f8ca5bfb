"""Kafka as a local process: ``kafka-1``, one KRaft node (broker and its own controller in one JVM).

Lab 08's event log on Kafka: the notebook scales ``kafka`` to 1 and restarts the relay and the
projector, which then find ``SHOP_KAFKA_BOOTSTRAP`` in their environment (``client_env``) and
publish to and consume from the topic instead of the Redis Stream.

The jars are Maven Central's (``make tools-kafka``); ``scalelab.kafka_broker`` writes the
broker's files and formats its storage once. Everything lives under
``<state>/local/kafka/<member>/``: server.properties, the partitions and the metadata log,
the broker's own log (``server.log``). The controller's port is picked once and kept in that
directory, so a killed broker comes back as the same one-node cluster. SIGKILL is a crash
(nothing flushed by the JVM); the restarted broker registers again once its old session has
expired (4 s here), which readiness — a raw Metadata request listing a live broker — waits for.
"""

from scalelab import kafka_broker
from scalelab.errors import RuntimeUnavailable
from scalelab.ports import free_port
from scalelab.process import ProcessRecord

CLIENTS = ("relay", "projector")   # the members that use the log when a broker runs


def home(rt, name: str):
    return rt.home / "kafka" / name


def preflight(rt) -> None:
    """Raise RuntimeUnavailable (one line naming the fix) before the broker is started."""
    try:
        kafka_broker.jars()
        kafka_broker.java()
    except kafka_broker.KafkaUnavailable as exc:
        raise RuntimeUnavailable(f"no Kafka broker here: {exc} (make tools-kafka gets both)") from None


def controller_port(rt, name: str) -> int:
    """The controller's port, picked once per data dir (the quorum's one voter keeps its address)."""
    path = home(rt, name) / "controller.port"
    if path.is_file():
        return int(path.read_text())
    port = free_port()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{port}\n")
    return port


def record(rt, name: str, port: int) -> ProcessRecord:
    data_dir = home(rt, name)
    libs = kafka_broker.jars()
    kafka_broker.write_config(data_dir, port, controller_port(rt, name))
    kafka_broker.format_storage(libs, data_dir)
    return ProcessRecord(name=name, argv=kafka_broker.argv(libs, data_dir), log=str(rt.home / f"logs/{name}.log"),
                         port=port, env=kafka_broker.env(), cwd=str(data_dir))


def ready(rt, rec: ProcessRecord) -> bool:
    assert rec.port is not None   # record() gives it one
    return kafka_broker.ready(rec.port, timeout=1)


def bootstrap(rt) -> str:
    members = rt.members("kafka")
    if not members:
        raise RuntimeUnavailable("no Kafka broker in this stack — lab08.use_kafka(stack) starts one")
    return f"{kafka_broker.HOST}:{rt._record(members[0]).port}"


def client_env(rt, service: str) -> dict[str, str]:
    """The relay and the projector use the Kafka log whenever a broker is a member of the stack."""
    if service in CLIENTS and rt.members("kafka"):
        return {"SHOP_KAFKA_BOOTSTRAP": bootstrap(rt)}
    return {}
