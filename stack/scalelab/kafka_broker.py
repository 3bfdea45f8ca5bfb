"""A real Apache Kafka broker as a local process: one node, KRaft (broker and controller in one JVM).

The jars come from Maven Central (``stack/deploy/ensure-kafka.sh`` copies them into
``~/.cache/scalelab/kafka/<VERSION>/libs``); this module writes the broker's files, formats its
storage once, builds its ``java`` command line and probes it with a raw Kafka request::

    libs = jars()
    with Broker(libs, tmp / "kafka") as broker:       # free ports, formatted, started, ready
        broker.bootstrap                               # "127.0.0.1:<port>"

Stdlib only: it depends on nothing else in the driver, nor on a Kafka client library.
"""

import base64
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

VERSION = "4.4.0"                 # stack/deploy/kafka/pom.xml's kafka.version
HOST = "127.0.0.1"
LOG_DIR = "log"                   # under data_dir: the partitions, the metadata log, meta.properties
HEAP = ("-Xms128m", "-Xmx384m")   # ~55 MiB live after start; headroom for the labs' topics and groups
JVM = (
    "-XX:+UseSerialGC",           # one GC thread, no G1 regions: the smallest RSS measured (MEASURED.md)
    "-XX:TieredStopAtLevel=1",    # C1 only: ~25 MiB less RSS, no C2 threads taking the 2 cores; same
                                  # throughput at the labs' scale (MEASURED.md)
    "-XX:+ExitOnOutOfMemoryError",  # a broker out of heap dies (and says so) instead of limping on
    "-Djava.awt.headless=true",
)


class KafkaUnavailable(RuntimeError):
    """The broker cannot be started here; the message names the fix in one line."""


def kafka_home(base: Path | None = None) -> Path:
    """Where ensure-kafka.sh keeps the versions: SCALELAB_KAFKA_HOME, else ~/.cache/scalelab/kafka."""
    if base is not None:
        return Path(base)
    env_home = os.environ.get("SCALELAB_KAFKA_HOME")
    return Path(env_home) if env_home else Path.home() / ".cache" / "scalelab" / "kafka"


def jars(home: Path | None = None) -> Path:
    """The directory of the broker's jars (the classpath is ``<it>/*``): <home>/<VERSION>/libs."""
    libs = kafka_home(home) / VERSION / "libs"
    if not (libs / f"kafka_2.13-{VERSION}.jar").is_file():
        raise KafkaUnavailable(f"Kafka {VERSION} jars not found in {libs} — run stack/deploy/ensure-kafka.sh")
    return libs


def java() -> str:
    """The ``java`` to run: $JAVA_HOME/bin/java, else the one on PATH (17 or newer, as ensure-kafka.sh checks)."""
    if os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaUnavailable("java not found — apt-get install openjdk-17-jre-headless, or set JAVA_HOME")
    return found


def server_properties(data_dir: Path, port: int, controller_port: int, node_id: int = 1,
                      bind: str = HOST, advertised: str | None = None,
                      external: tuple[int, str] | None = None) -> str:
    """server.properties of a one-node cluster: broker and controller in one process.

    By default everything is on 127.0.0.1 (the local runtime). In a container (the compose
    image) the broker binds ``bind`` (0.0.0.0), tells clients on the network ``advertised``
    (``kafka:9092``), and ``external`` = (port, "127.0.0.1:<host port>") adds a listener for
    clients outside, through the port Docker publishes.
    """
    log_dir = Path(data_dir) / LOG_DIR
    listeners = [f"PLAINTEXT://{bind}:{port}", f"CONTROLLER://{HOST}:{controller_port}"]
    announced = [f"PLAINTEXT://{advertised or f'{HOST}:{port}'}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if external is not None:
        listeners.append(f"EXTERNAL://{bind}:{external[0]}")
        announced.append(f"EXTERNAL://{external[1]}")
        protocols.append("EXTERNAL:PLAINTEXT")
    return "\n".join([
        "# KRaft, no ZooKeeper: this node is the whole cluster, broker and its own controller",
        "process.roles=broker,controller",
        f"node.id={node_id}",
        "# a static quorum of one voter (the storage is formatted with the same cluster id once)",
        f"controller.quorum.voters={node_id}@{HOST}:{controller_port}",
        "# clients connect to PLAINTEXT (and EXTERNAL from outside a container); the controller's",
        "# Raft traffic has its own listener",
        f"listeners={','.join(listeners)}",
        f"advertised.listeners={','.join(announced)}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"listener.security.protocol.map={','.join(protocols)}",
        "# partitions and the metadata log live here; meta.properties marks it formatted",
        f"log.dirs={log_dir}",
        "# a topic created without a count (or auto-created) gets 3 partitions",
        "num.partitions=3",
        "# one broker: every internal topic has one replica (the defaults, 3, could never be met)",
        "default.replication.factor=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "# the log cleaner (compacted topics: __consumer_offsets) takes 128 MiB of heap by default;",
        "# 16 MiB is plenty here, and the broker's RSS after start drops from ~300 to ~170 MiB",
        "log.cleaner.dedupe.buffer.size=16777216",
        "# after a crash (SIGKILL) the restarted broker may register again only once its old session",
        "# expired: 4 s instead of 9 s (heartbeats every 1 s instead of 2 s to keep a live one registered)",
        "broker.session.timeout.ms=4000",
        "broker.heartbeat.interval.ms=1000",
        "# a lone consumer gets its partitions at once, not after the 3 s wait for more members",
        "group.initial.rebalance.delay.ms=0",
        "",
    ])


def log4j2_properties(log_file: Path | None) -> str:
    """Log4j2 configuration: everything at INFO into one file, nothing on the console (None: on the
    console only — a container's log)."""
    appender = (["appender.out.type = File", f"appender.out.fileName = {log_file}"] if log_file is not None
                else ["appender.out.type = Console", "appender.out.target = SYSTEM_OUT"])
    return "\n".join([
        "status = warn",
        "shutdownHook = disable",     # lines are flushed as written; the hook only printed a warning at SIGTERM
        *appender,
        "appender.out.name = out",
        "appender.out.layout.type = PatternLayout",
        "appender.out.layout.pattern = [%d] %p %m (%c)%n",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.out.ref = out",
        "",
    ])


def write_config(data_dir: Path, port: int, controller_port: int, node_id: int = 1, **listeners) -> Path:
    """Write server.properties and log4j2.properties into data_dir; return server.properties.
    ``listeners``: server_properties' bind, advertised and external, and console=True for a log on
    stdout instead of server.log (the compose image)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = None if listeners.pop("console", False) else data_dir / "server.log"
    (data_dir / "log4j2.properties").write_text(log4j2_properties(log_file))
    properties = data_dir / "server.properties"
    properties.write_text(server_properties(data_dir, port, controller_port, node_id, **listeners))
    return properties


def cluster_id(data_dir: Path) -> str:
    """The cluster's id, made once and kept beside the data (cluster.id): Kafka's Uuid format,
    16 random bytes in URL-safe base64 without padding, never starting with '-'."""
    path = Path(data_dir) / "cluster.id"
    if path.is_file():
        return path.read_text().strip()
    while (made := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        pass
    path.write_text(made + "\n")
    return made


def formatted(data_dir: Path) -> bool:
    return (Path(data_dir) / LOG_DIR / "meta.properties").is_file()


def format_storage(libs: Path, data_dir: Path, timeout: float = 60) -> bool:
    """Run Kafka's own storage tool (kafka.tools.StorageTool format) once; False when already formatted."""
    data_dir = Path(data_dir)
    if formatted(data_dir):
        return False
    properties = data_dir / "server.properties"
    if not properties.is_file():
        raise KafkaUnavailable(f"{properties} missing — call write_config() before format_storage()")
    argv = [java(), *HEAP, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}",
            "-cp", f"{libs}/*", "kafka.tools.StorageTool",
            "format", "--cluster-id", cluster_id(data_dir), "--config", str(properties)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env(), stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not formatted(data_dir):
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise KafkaUnavailable(f"kafka storage format failed in {data_dir}: {last}")
    return True


def argv(libs: Path, data_dir: Path) -> list[str]:
    """The broker's command line: ``java … kafka.Kafka <data_dir>/server.properties``."""
    data_dir = Path(data_dir)
    return [java(), *HEAP, *JVM,
            f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={data_dir}",
            "-cp", f"{Path(libs)}/*", "kafka.Kafka", str(data_dir / "server.properties")]


def env() -> dict[str, str]:
    """The broker's environment: ours, as it is. kafka.Kafka reads no variable (KAFKA_HEAP_OPTS and
    the like are kafka-run-class.sh's, not the JVM's): every setting is in argv() or server.properties.
    (MALLOC_ARENA_MAX=2 was measured too: no change in RSS, so it is not set.)"""
    return dict(os.environ)


# -- readiness: one raw Metadata request (v4), no client library -----------------------------------
METADATA = 3
METADATA_VERSION = 4              # the oldest version Kafka 4 still answers (KIP-896), not flexible


def _metadata_brokers(port: int, timeout: float) -> list[int]:
    """Node ids of the brokers the broker on port reports (KRaft reports unfenced brokers only)."""
    client_id = b"scalelab-ready"
    body = struct.pack(">hhih", METADATA, METADATA_VERSION, 1, len(client_id)) + client_id
    body += struct.pack(">i?", -1, False)       # topics: null = all topics; no auto-creation
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        reply = _recv(sock, size)
    correlation, _throttle, count = struct.unpack_from(">iii", reply, 0)
    if correlation != 1:
        return []
    at, nodes = 12, []
    for _ in range(count):
        node, host_len = struct.unpack_from(">ih", reply, at)
        at += 6 + host_len + 4                  # node_id, host, port
        rack_len = struct.unpack_from(">h", reply, at)[0]
        at += 2 + max(rack_len, 0)
        nodes.append(node)
    return nodes


def _recv(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return bytes(data)


def ready(port: int, timeout: float = 2.0) -> bool:
    """True when the broker on 127.0.0.1:port answers a Metadata request listing a live broker:
    its listener is open and it has registered with the controller and been unfenced, so a
    topic created now gets its replica."""
    try:
        return bool(_metadata_brokers(port, timeout))
    except (OSError, struct.error):
        return False


# -- one broker process ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Linux: the broker gets SIGKILL when the Python process that started it dies (no orphan JVM).
    # The "parent" is the thread that called start(): start brokers from a thread that outlives them.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG


class Broker:
    """One local broker: ``start()`` formats once and waits until ready, ``kill()`` is a crash
    (SIGKILL), ``stop()`` a clean shutdown (SIGTERM, then SIGKILL); both are safe to call twice.
    The ports are kept across restarts, so the same data dir comes back as the same cluster."""

    def __init__(self, libs: Path, data_dir: Path, port: int | None = None, controller_port: int | None = None):
        self.libs, self.data_dir = Path(libs), Path(data_dir)
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def start(self, timeout: float = 60) -> float:
        """Start the broker and wait (bounded) until ready; return the seconds it took."""
        if self.proc is not None and self.proc.poll() is None:
            raise KafkaUnavailable(f"kafka broker already running on {self.bootstrap} (pid {self.proc.pid})")
        write_config(self.data_dir, self.port, self.controller_port)
        format_storage(self.libs, self.data_dir)
        began = time.monotonic()
        with open(self.data_dir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(argv(self.libs, self.data_dir), env=env(), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise KafkaUnavailable(f"kafka broker exited with {self.proc.returncode} — see {self.log_file}")
            if ready(self.port, timeout=1):
                return time.monotonic() - began
            time.sleep(0.1)
        self.kill()
        raise KafkaUnavailable(f"kafka broker not ready on {self.bootstrap} after {timeout:.0f} s"
                               f" — see {self.log_file}")

    def kill(self) -> None:
        self.stop(sig=signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def __enter__(self) -> "Broker":
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
