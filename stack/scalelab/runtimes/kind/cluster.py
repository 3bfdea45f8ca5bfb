"""The kind cluster the ``kind`` runtime runs on: tools, the cluster, the images in it.

    tools = require_tools()                 # RuntimeUnavailable, one line naming the fix
    cluster = Cluster(home)                 # kind-config.yaml's cluster, name "scalelab"
    cluster.ensure(client)                  # create it (or re-use it), write its kubeconfig
    cluster.load(["scalelab/shop:<tag>"])   # kind load docker-image (skips what a node has)

The cluster is kept between stacks (creating one takes a minute or two): ``down()`` deletes
only the stack's namespace, unless ``SCALELAB_KIND_DELETE_CLUSTER=1``.
"""

import json
import os
from pathlib import Path
from typing import Any, cast

import yaml

from scalelab.errors import RuntimeUnavailable, ServiceFailed
from scalelab.paths import REPO
from scalelab.runtimes.kind import host
from scalelab.runtimes.kubernetes.tools import NO_KUBECTL, tool
from scalelab.runtimes.kubernetes.tools import run as _run

KIND_CONFIG = REPO / "kind-config.yaml"
REGISTRY_CONTAINER = "scalelab-registry"     # make kind-registry's (registry.py); deleted with the cluster
KIND_OFFLINE = REPO / "stack" / "deploy" / "kind-offline"


def _versions() -> dict[str, str]:
    """stack/deploy/kind-offline/versions.env: the versions the offline build makes (KEY=VALUE)."""
    pairs = (line.split("=", 1) for line in (KIND_OFFLINE / "versions.env").read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


VERSIONS = _versions()
# kind v0.30's own node image for Kubernetes 1.34, pinned by digest as its release notes give
# it: what a learner with internet runs. `make kind-offline` builds the same Kubernetes minor
# here from Go modules (OFFLINE_NODE_IMAGE); either is used when present, the official first.
OFFICIAL_NODE_IMAGE = VERSIONS["KIND_OFFICIAL_NODE_IMAGE"]
OFFLINE_NODE_IMAGE = f"scalelab/kind-node:{VERSIONS['KUBERNETES_VERSION']}"
METRICS_SERVER_IMAGE = f"registry.k8s.io/metrics-server/metrics-server:{VERSIONS['METRICS_SERVER_VERSION']}"
MIN_KIND = (0, 30)
INSTALL_KIND = ("install kind >= 0.30 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation) "
                "or build it here with `make kind-offline`")
NO_KIND = f"kind not found — {INSTALL_KIND}, or use runtime=\"local\""
def kind_version() -> tuple[int, int] | None:
    """(major, minor) of the kind binary tool() finds, or None without one."""
    if tool("kind") is None:
        return None
    out = _run(["kind", "version"], timeout=30, check=False).stdout   # "kind v0.30.0 go1.26.8 linux/amd64"
    for word in out.split():
        if word.startswith("v") and word[1:2].isdigit():
            parts = word[1:].split(".")
            try:
                return int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                break
    return (0, 0)


def require_tools() -> None:
    """kind and kubectl (cheap checks first; the engine and the node image come after)."""
    version = kind_version()
    if version is None:
        raise RuntimeUnavailable(NO_KIND)
    if version < MIN_KIND:
        raise RuntimeUnavailable(f"kind {version[0]}.{version[1]} is too old — {INSTALL_KIND}, "
                                 "or use runtime=\"local\"")
    if tool("kubectl") is None:
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
    """The node image to create the cluster from: SCALELAB_KIND_NODE_IMAGE when set, else kind's
    official one or the one ``make kind-offline`` built, whichever is here (official first)."""
    wanted = os.environ.get("SCALELAB_KIND_NODE_IMAGE")
    for image in ([wanted] if wanted else [OFFICIAL_NODE_IMAGE, OFFLINE_NODE_IMAGE]):
        if image_present(client, image):
            return image
        by_tag = image.split("@", 1)[0]
        if by_tag != image and image_present(client, by_tag):
            return by_tag
    if wanted:
        raise RuntimeUnavailable(f"kind node image {wanted} (SCALELAB_KIND_NODE_IMAGE) not found locally — "
                                 "pull or build it, or unset SCALELAB_KIND_NODE_IMAGE")
    raise RuntimeUnavailable(f"kind node image not found locally — `docker pull {OFFICIAL_NODE_IMAGE}` "
                             "(with a registry) or `make kind-offline` (builds it here from Go modules), "
                             "or use runtime=\"local\"")


def node_image_origin(image: str) -> str:
    """How doctor names a node image: kind's official one, or built here by make kind-offline."""
    return "built here by make kind-offline" if image.startswith("scalelab/kind-node:") else "kind's official image"


def cluster_name() -> str:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    return os.environ.get("SCALELAB_KIND_CLUSTER", config.get("name", "scalelab"))


def port_mappings() -> dict[int, int]:
    """NodePort -> host port (on 127.0.0.1), as kind-config.yaml publishes them."""
    config = yaml.safe_load(KIND_CONFIG.read_text())
    return {int(m["containerPort"]): int(m["hostPort"])
            for node in config["nodes"] for m in node.get("extraPortMappings", [])}


def entry_port() -> int:
    """The host port of the stack's main entry (nginx, or the user service without it)."""
    return port_mappings()[min(port_mappings())]


class Cluster:
    def __init__(self, home: Path):
        self.name = cluster_name()
        self.home = home
        self.kubeconfig = home / "kubeconfig"

    def exists(self) -> bool:
        out = _run(["kind", "get", "clusters"], timeout=60, check=False)
        return self.name in out.stdout.split()

    def published_ports(self) -> set[int]:
        """The NodePorts the running control plane publishes (kind-config.yaml when it was created)."""
        out = _run(["docker", "inspect", f"{self.name}-control-plane", "--format",
                    "{{json .HostConfig.PortBindings}}"], timeout=60, check=False)
        if out.returncode != 0:
            return set()
        return {int(key.split("/")[0]) for key in (json.loads(out.stdout) or {})}

    def check_config(self) -> None:
        """A cluster created from an older kind-config.yaml lacks a port the labs use: say so."""
        missing = set(port_mappings()) - self.published_ports()
        if missing:
            raise RuntimeUnavailable(f"the kind cluster {self.name} was created from an older kind-config.yaml "
                                     f"(it does not publish NodePort {', '.join(map(str, sorted(missing)))}) — "
                                     "delete it with `make kind-delete`; the next up() creates it again")

    def ensure(self, client) -> bool:
        """Create the cluster unless it exists; write its kubeconfig. True when created now."""
        created = False
        if not self.exists():
            image = node_image(client)
            host.record(self.name)          # what the nodes will change on the host, as it is now
            _run(["kind", "create", "cluster", "--name", self.name, "--config", str(KIND_CONFIG),
                  "--image", image, "--wait", "180s", "--kubeconfig", str(self.kubeconfig)], timeout=600)
            created = True
        else:
            self.check_config()
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
        """metrics-server's image into the nodes when the host's engine has it. Otherwise the node
        image holds it already (make kind-offline's does) or the nodes pull it (kind's official one)."""
        if image_present(client, METRICS_SERVER_IMAGE):
            self.load([METRICS_SERVER_IMAGE], log)

    def delete(self) -> None:
        """Delete the cluster and kind's Docker network (when nothing else uses it), then put
        back the host's kernel settings its nodes changed (host.py)."""
        if self.exists():
            _run(["kind", "delete", "cluster", "--name", self.name], timeout=300)
        # the local registry of `make kind-registry` lives on kind's network too: it goes first
        _run(["docker", "rm", "--force", "--volumes", REGISTRY_CONTAINER], timeout=60, check=False)
        network = _run(["docker", "network", "inspect", "kind", "--format", "{{len .Containers}}"],
                       timeout=60, check=False)
        if network.returncode == 0 and network.stdout.strip() == "0":
            _run(["docker", "network", "rm", "kind"], timeout=60, check=False)
        if not host.recorded(self.name):
            return
        try:
            host.restore(self.name)
        except PermissionError as exc:
            left = ", ".join(f"{name.replace('/', '.')}={value}" for name, value in host.recorded(self.name).items())
            raise ServiceFailed(f"cluster {self.name} deleted; putting back the host settings its nodes changed needs "
                                f"root: sysctl -w {left}") from exc


def doctor_rows() -> list[tuple[str, str, str]]:
    """``scalelab doctor``'s kind lines: node image, metrics-server image, the cluster, and
    whether metrics flow (the metrics.k8s.io API: what `kubectl top nodes` reads)."""
    ok, warn = "ok", "warn"
    if tool("kind") is None:
        return []                            # the tools lines already say kind is missing
    rows = []
    try:
        from scalelab.runtimes.common.engine import connect
        client = connect()
    except RuntimeUnavailable as exc:
        return [(warn, "kind node image", f"cannot tell: {exc}")]
    try:
        image = node_image(client)
        rows.append((ok, "kind node image", f"{image} present ({node_image_origin(image)})"))
    except RuntimeUnavailable as exc:
        rows.append((warn, "kind node image", str(exc)))
        image = ""
    if image_present(client, METRICS_SERVER_IMAGE):
        rows.append((ok, "metrics-server image", f"{METRICS_SERVER_IMAGE} present (kind load puts it in the nodes)"))
    elif image == OFFLINE_NODE_IMAGE:
        rows.append((ok, "metrics-server image", f"{METRICS_SERVER_IMAGE} inside the node image (make kind-offline)"))
    else:
        rows.append((ok, "metrics-server image",
                     f"{METRICS_SERVER_IMAGE}: the nodes pull it when the HPA first needs it"))
    name = cluster_name()
    out = _run(["kind", "get", "clusters"], timeout=60, check=False)
    if name not in out.stdout.split():
        rows.append((ok, "kind cluster", f"{name} not created yet (Stack(lab=6, runtime=\"kind\").up() creates it)"))
        return rows
    try:
        from kubernetes import client as k8s
        from kubernetes import config
        kubeconfig = yaml.safe_load(_run(["kind", "get", "kubeconfig", "--name", name], timeout=60).stdout)
        api = config.new_client_from_config_dict(kubeconfig)
        nodes: list[Any] = k8s.CoreV1Api(api).list_node().items   # the models' every field is Optional
        ready = sum(1 for n in nodes for c in n.status.conditions or [] if c.type == "Ready" and c.status == "True")
        rows.append((ok if ready == len(nodes) else warn, "kind cluster",
                     f"{name}: {ready} of {len(nodes)} nodes ready"))
        metrics = cast(dict[str, Any],   # the JSON object (the client's stubs say object)
                       k8s.CustomObjectsApi(api).list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes"))
        usage = ", ".join(f"{m['metadata']['name']} {m['usage']['cpu']} CPU" for m in metrics.get("items", []))
        rows.append((ok if usage else warn, "metrics", f"metrics.k8s.io answers: {usage}" if usage
                     else "metrics.k8s.io answers with no nodes yet (metrics-server scrapes every 10 s)"))
    except Exception as exc:   # the API or metrics-server not answering: say what it said
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0][:120]
        rows.append((warn, "metrics", f"metrics.k8s.io not answering ({reason}) — metrics-server is installed by "
                                      "Stack(lab=6, runtime=\"kind\").up(); "
                                      "`kubectl -n kube-system logs deploy/metrics-server`"))
    return rows
