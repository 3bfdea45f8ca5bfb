"""The kind cluster the ``kind`` runtime runs on: tools, the cluster, the images in it.

    tools = require_tools()                 # RuntimeUnavailable, one line naming the fix
    cluster = Cluster(home)                 # kind-config.yaml's cluster, name "scalelab"
    cluster.ensure(client)                  # create it (or re-use it), write its kubeconfig
    cluster.load(["scalelab/shop:<tag>"])   # kind load docker-image (skips what a node has)

The cluster is kept between stacks (creating one takes a minute or two): ``down()`` deletes
only the stack's namespace, unless ``SCALELAB_KIND_DELETE_CLUSTER=1``.
"""

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from scalelab.errors import RuntimeUnavailable, ServiceFailed
from scalelab.paths import REPO

KIND_CONFIG = REPO / "kind-config.yaml"
K8S = REPO / "stack" / "deploy" / "k8s"
# kind v0.27's node image for Kubernetes 1.32 (the version kube_schema validates against),
# pinned by digest as kind's release notes give it.
NODE_IMAGE = os.environ.get(
    "SCALELAB_KIND_NODE_IMAGE",
    "kindest/node:v1.32.2@sha256:f226345927d7e348497136874b6d207e0b32cc52154ad8323129352923a3142f")
METRICS_SERVER_IMAGE = "registry.k8s.io/metrics-server/metrics-server:v0.7.2"   # k8s/metrics-server
MIN_KIND = (0, 27)

NO_KIND = ("kind not found — install kind >= 0.27 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation; "
           "Debian: apt-get install -t trixie kind) or use runtime=\"local\"")
NO_KUBECTL = ("kubectl not found — install kubectl >= 1.30 (https://kubernetes.io/docs/tasks/tools/; "
              "it renders the manifests with its built-in kustomize) or use runtime=\"local\"")


def _run(argv: list[str], timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             **kwargs)
    except subprocess.TimeoutExpired:
        raise ServiceFailed(f"`{' '.join(argv[:4])} ...` took over {timeout:.0f}s") from None
    if check and out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-12:])
        raise ServiceFailed(f"`{' '.join(argv[:4])} ...` failed (exit {out.returncode}):\n{tail}")
    return out


def kind_version() -> tuple[int, int] | None:
    """(major, minor) of the kind binary on PATH, or None without one."""
    if shutil.which("kind") is None:
        return None
    out = _run(["kind", "version"], timeout=30, check=False).stdout   # "kind v0.27.0 go1.23.6 linux/amd64"
    for word in out.split():
        if word.startswith("v") and word[1:2].isdigit():
            parts = word[1:].split(".")
            try:
                return int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                break
    return (0, 0)


def require_tools() -> None:
    """kind and kubectl on PATH (cheap checks first; the engine and the node image come after)."""
    version = kind_version()
    if version is None:
        raise RuntimeUnavailable(NO_KIND)
    if version < MIN_KIND:
        raise RuntimeUnavailable(f"kind {version[0]}.{version[1]} is too old — install kind >= 0.27 "
                                 "(https://kind.sigs.k8s.io/docs/user/quick-start/#installation) or use runtime=\"local\"")
    if shutil.which("kubectl") is None:
        raise RuntimeUnavailable(NO_KUBECTL)


def image_present(client, reference: str) -> bool:
    import docker.errors
    try:
        client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError:      # some engines refuse a digest reference they do not have
        return False


def node_image(client) -> str:
    """The node image to create the cluster from: present locally, or a one-line fix."""
    if image_present(client, NODE_IMAGE):
        return NODE_IMAGE
    by_tag = NODE_IMAGE.split("@", 1)[0]
    if by_tag != NODE_IMAGE and image_present(client, by_tag):
        return by_tag
    raise RuntimeUnavailable(f"kind node image not found locally — run `docker pull {NODE_IMAGE}` "
                             "(or set SCALELAB_KIND_NODE_IMAGE to a kindest/node:v1.32.x you have), "
                             "or use runtime=\"local\"")


def cluster_name() -> str:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    return os.environ.get("SCALELAB_KIND_CLUSTER", config.get("name", "scalelab"))


def entry_port() -> int:
    """The host port (on 127.0.0.1) kind-config.yaml maps to the entry NodePort."""
    config = yaml.safe_load(KIND_CONFIG.read_text())
    for node in config["nodes"]:
        for mapping in node.get("extraPortMappings", []):
            return int(mapping["hostPort"])
    raise ServiceFailed("kind-config.yaml maps no port: the lab's entry NodePort needs an extraPortMappings entry")


def entry_node_port() -> int:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    for node in config["nodes"]:
        for mapping in node.get("extraPortMappings", []):
            return int(mapping["containerPort"])
    raise ServiceFailed("kind-config.yaml maps no port: the lab's entry NodePort needs an extraPortMappings entry")


class Cluster:
    def __init__(self, home: Path):
        self.name = cluster_name()
        self.home = home
        self.kubeconfig = home / "kubeconfig"

    def exists(self) -> bool:
        out = _run(["kind", "get", "clusters"], timeout=60, check=False)
        return self.name in out.stdout.split()

    def ensure(self, client) -> bool:
        """Create the cluster unless it exists; write its kubeconfig. True when created now."""
        created = False
        if not self.exists():
            image = node_image(client)
            _run(["kind", "create", "cluster", "--name", self.name, "--config", str(KIND_CONFIG),
                  "--image", image, "--wait", "180s", "--kubeconfig", str(self.kubeconfig)], timeout=600)
            created = True
        self.write_kubeconfig()
        return created

    def write_kubeconfig(self) -> Path:
        """The cluster's kubeconfig (API server on 127.0.0.1), 0600, in the stack's state dir."""
        text = _run(["kind", "get", "kubeconfig", "--name", self.name], timeout=60).stdout
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return self.kubeconfig

    def load(self, images: list[str], log: Path) -> None:
        """Copy images from the host's engine into every node (kind skips a node that has one)."""
        out = _run(["kind", "load", "docker-image", "--name", self.name, *images], timeout=900, check=False)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"$ kind load docker-image --name {self.name} {' '.join(images)}\n{out.stdout}{out.stderr}")
        if out.returncode != 0:
            tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-8:])
            raise ServiceFailed(f"kind load docker-image failed (exit {out.returncode}):\n{tail}")

    def load_metrics_server(self, client, log: Path) -> None:
        if not image_present(client, METRICS_SERVER_IMAGE):
            raise RuntimeUnavailable(f"metrics-server image not found locally — run `docker pull {METRICS_SERVER_IMAGE}` "
                                     "(the HorizontalPodAutoscaler reads CPU from it), or use runtime=\"local\"")
        self.load([METRICS_SERVER_IMAGE], log)

    def delete(self) -> None:
        if self.exists():
            _run(["kind", "delete", "cluster", "--name", self.name], timeout=300)


def kustomize(directory: Path) -> str:
    """``kubectl kustomize DIR``: the rendered manifests (never printed: they hold the Secret)."""
    if shutil.which("kubectl") is None:
        raise RuntimeUnavailable(NO_KUBECTL)
    out = _run(["kubectl", "kustomize", str(directory)], timeout=120, check=False)
    if out.returncode != 0:
        raise ServiceFailed(f"kubectl kustomize {directory} failed: {out.stderr.strip()[-600:]}")
    return out.stdout


def doctor_rows() -> list[tuple[str, str, str]]:
    """``scalelab doctor``'s kind lines: node image, metrics-server image, the cluster, and
    whether metrics flow (the metrics.k8s.io API: what `kubectl top nodes` reads)."""
    ok, warn = "ok", "warn"
    if shutil.which("kind") is None:
        return []                            # the tools lines already say kind is missing
    rows = []
    try:
        from scalelab.runtimes.compose_engine import connect
        client = connect()
    except RuntimeUnavailable as exc:
        return [(warn, "kind node image", f"cannot tell: {exc}")]
    try:
        rows.append((ok, "kind node image", f"{node_image(client)} present"))
    except RuntimeUnavailable as exc:
        rows.append((warn, "kind node image", str(exc)))
    rows.append((ok, "metrics-server image", f"{METRICS_SERVER_IMAGE} present") if image_present(client, METRICS_SERVER_IMAGE)
                else (warn, "metrics-server image", f"not present — `docker pull {METRICS_SERVER_IMAGE}` (the HPA needs it)"))
    name = cluster_name()
    out = _run(["kind", "get", "clusters"], timeout=60, check=False)
    if name not in out.stdout.split():
        rows.append((ok, "kind cluster", f"{name} not created yet (Stack(lab=6, runtime=\"kind\").up() creates it)"))
        return rows
    try:
        from kubernetes import client as k8s, config
        kubeconfig = yaml.safe_load(_run(["kind", "get", "kubeconfig", "--name", name], timeout=60).stdout)
        api = config.new_client_from_config_dict(kubeconfig)
        nodes = k8s.CoreV1Api(api).list_node().items
        ready = sum(1 for n in nodes for c in n.status.conditions or [] if c.type == "Ready" and c.status == "True")
        rows.append((ok if ready == len(nodes) else warn, "kind cluster", f"{name}: {ready} of {len(nodes)} nodes ready"))
        metrics = k8s.CustomObjectsApi(api).list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
        usage = ", ".join(f"{m['metadata']['name']} {m['usage']['cpu']} CPU" for m in metrics.get("items", []))
        rows.append((ok if usage else warn, "metrics", f"metrics.k8s.io answers: {usage}" if usage
                     else "metrics.k8s.io answers with no nodes yet (metrics-server scrapes every 10 s)"))
    except Exception as exc:   # the API or metrics-server not answering: say what it said
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0][:120]
        rows.append((warn, "metrics", f"metrics.k8s.io not answering ({reason}) — metrics-server is installed by "
                                      "Stack(lab=6, runtime=\"kind\").up(); `kubectl -n kube-system logs deploy/metrics-server`"))
    return rows
