"""Lab 08's Kafka broker on a cluster: the StatefulSet ``kafka`` (components/kafka), at 0 replicas
until ``lab08.use_kafka`` scales it to 1.

* its image is built from ``make tools-kafka``'s jars and published to the nodes only then
  (``publish_image``): a lab 08 that stays on the Redis Stream never loads 570 MB of JVM;
* clients on the host reach it through a port-forward to its EXTERNAL listener (9094), which the
  broker advertises as ``127.0.0.1:<port>`` — so that port is picked once per stack
  (``external_port``, kept in the state directory) and rendered into the ConfigMap
  ``kafka-settings`` before the broker starts, and the forward always listens on it;
* the relay and the projector find it through ``SHOP_KAFKA_BOOTSTRAP=kafka:9092`` in their
  Deployments' environment (``reconnect``), set while the stack has a broker member.
"""

from pathlib import Path

from scalelab.errors import RuntimeUnavailable, ScalelabError
from scalelab.ports import free_port, port_busy
from scalelab.runtimes.common import images as compose_images

SERVICE, MEMBER = "kafka", "kafka-1"
INTERNAL, EXTERNAL = 9092, 9094
EVENT_LOG = ("relay", "projector")      # the Deployments that read SHOP_KAFKA_BOOTSTRAP
BOOTSTRAP_VAR = "SHOP_KAFKA_BOOTSTRAP"


def external_port(home: Path) -> int:
    """The host port the driver's forward to 9094 listens on, picked once per state directory."""
    saved = home / "kafka-port"
    if saved.exists() and saved.read_text().strip().isdigit():
        return int(saved.read_text())
    port = free_port()
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(f"{port}\n")
    return port


def settings(home: Path) -> dict:
    """The driver's part of the ConfigMap ``kafka-settings`` (merged into the component's)."""
    return {"name": "kafka-settings", "behavior": "merge", "options": {"disableNameSuffixHash": True},
            "literals": [f"KAFKA_EXTERNAL_PORT={external_port(home)}"]}


def publish_image(runtime) -> None:
    """The kafka image built (from make tools-kafka's jars: RuntimeUnavailable in one line
    without them) and made pullable by the nodes, under the tag the render named — or, on a
    cluster whose nodes were given the images by hand, found there."""
    if runtime.builds_images:
        compose_images.ensure_kafka(runtime._docker(), runtime.home / "build.log")
    runtime._publish([compose_images.reference(compose_images.KAFKA, compose_images.kafka_tag())])


def brokers(runtime) -> dict[str, str | None]:
    """The stack's broker members (a pod, or None: killed and not yet started again)."""
    return runtime._members_of(SERVICE) if runtime.lab else {}


def bootstrap(runtime) -> str:
    """``127.0.0.1:<port>``: the forward to kafka-1's EXTERNAL listener, the address it advertises.
    While kafka-1 is down the address is the same (clients retry, as against a stopped process)."""
    found = brokers(runtime)
    if not found:
        raise RuntimeUnavailable("no Kafka broker in this stack — lab08.use_kafka(stack) starts one")
    port = external_port(runtime.home)
    if found.get(MEMBER) and runtime.forwards.known(MEMBER, EXTERNAL) is None:
        runtime.forwards.port(MEMBER, EXTERNAL, lambda: runtime._pod_identity(MEMBER), local=port)
    return f"127.0.0.1:{port}"


def reconnect(runtime) -> None:
    """The relay and the projector stopped (SIGTERM), their environment given the broker's
    address (or freed of it when the stack has no broker), and started again under their names:
    a pod keeps the environment it was created with."""
    value = f"{SERVICE}:{INTERNAL}" if brokers(runtime) else None
    for service in EVENT_LOG:
        members = runtime._members_of(service)
        if not members:
            continue
        for member, pod in members.items():
            if pod is not None:
                runtime.kill(member, "TERM")
        entry = {"name": BOOTSTRAP_VAR, "value": value} if value else {"name": BOOTSTRAP_VAR, "$patch": "delete"}
        runtime.apps.patch_namespaced_deployment(
            service, runtime.namespace, {"spec": {"template": {"spec": {"containers": [
                {"name": service, "env": [entry]}]}}}})
        for member in members:
            runtime.start(member)


def check_port_free(port: int) -> None:
    """The saved port taken by another program: one line, before the broker advertises it."""
    if port_busy(port):
        raise ScalelabError(f"port {port}, which this stack's Kafka broker advertises to clients on this "
                            "machine, is taken by another program — free it, or bring the stack down with "
                            "stack.down(purge=True) so the next one picks another")
