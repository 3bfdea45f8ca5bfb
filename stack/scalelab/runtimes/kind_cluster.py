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
