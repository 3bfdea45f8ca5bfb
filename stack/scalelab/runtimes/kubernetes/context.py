"""The ``kubernetes`` runtime: the stack on any cluster a kubeconfig context reaches — minikube,
k3d, a cloud cluster, or the kind cluster of the ``kind`` runtime seen as any other cluster.

What it needs, each named in one line when missing:

* a kubeconfig: ``$KUBECONFIG`` (its first file) or ``~/.kube/config``, and a context in it
  (``SCALELAB_KUBE_CONTEXT``, else the file's current context) whose API server answers;
* the stack's images where the nodes can pull them: with ``SCALELAB_REGISTRY=host:port`` the
  driver builds them (Docker) and pushes ``host:port/scalelab/NAME:TAG``; without it they must
  already be on every node (``kind load docker-image``, ``minikube image load``,
  ``k3d image import``) — the driver checks each node's image list and names what is missing;
* ``kubectl`` (kustomize, port-forwards).

Differences from ``kind``, by design: entry points are ``kubectl port-forward``s to a pod of the
front service (a remote cluster's NodePorts are not on 127.0.0.1, and are ClusterIP here);
``kill(member, "STOP")`` freezes the pod's processes from inside it (``kubectl exec``: SIGSTOP to
each container's process group — the pods share their process namespace, so a container's
server is not PID 1, which ignores signals sent from inside); ``KILL`` is a SIGKILL sent the same
way, then the pod deleted with no grace period.
metrics-server is installed only where the cluster has no metrics API of its own.
"""

import os
import time
from pathlib import Path

import yaml

from scalelab.errors import RuntimeUnavailable, ServiceFailed
from scalelab.runtimes.common import images as compose_images
from scalelab.runtimes.kubernetes import images
from scalelab.runtimes.kubernetes.api import reason
from scalelab.runtimes.kubernetes.runtime import KubernetesRuntime
from scalelab.runtimes.kubernetes.tools import NO_KUBECTL, tool

NODE_STATUS_MAX_IMAGES = 50    # the kubelet's --node-status-max-images default
NODE_STATUS_WAIT_S = 25     # the kubelet's status (with its images) is reported every 10 s
LOAD_HINT = ("load them into every node (kind load docker-image / minikube image load / k3d image import) "
             "or set SCALELAB_REGISTRY=host:port to have them pushed there")


def kubeconfig_path() -> Path:
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def chosen_context(kubeconfig: Path) -> str:
    """SCALELAB_KUBE_CONTEXT, else the kubeconfig's current context; one line when it has none."""
    try:
        config = yaml.safe_load(kubeconfig.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RuntimeUnavailable(f"kubeconfig {kubeconfig} unreadable ({exc}) — or use runtime=\"local\"") from exc
    names = [c.get("name") for c in config.get("contexts") or []]
    wanted = os.environ.get("SCALELAB_KUBE_CONTEXT") or config.get("current-context")
    if not wanted:
        raise RuntimeUnavailable(f"kubeconfig {kubeconfig} has no current context — set SCALELAB_KUBE_CONTEXT to "
                                 f"one of {', '.join(map(str, names)) or '(none)'}, or use runtime=\"local\"")
    if wanted not in names:
        raise RuntimeUnavailable(f"no context {wanted!r} in {kubeconfig} "
                                 f"(it has {', '.join(map(str, names)) or 'none'})"
                                 " — set SCALELAB_KUBE_CONTEXT, or use runtime=\"local\"")
    return wanted


class ContextRuntime(KubernetesRuntime):
    name = "kubernetes"

    def __init__(self, state_dir):
        if tool("kubectl") is None:
            raise RuntimeUnavailable(NO_KUBECTL)
        self._kubeconfig = kubeconfig_path()
        if not self._kubeconfig.is_file():
            raise RuntimeUnavailable(f"no kubeconfig at {self._kubeconfig} — set KUBECONFIG to your cluster's, "
                                     "or use runtime=\"kind\" (a local cluster) or runtime=\"local\"")
        self.context = chosen_context(self._kubeconfig)
        self.registry = os.environ.get("SCALELAB_REGISTRY", "").strip().rstrip("/") or None
        super().__init__(state_dir)

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def _connect(self) -> None:
        from kubernetes import client
        try:
            client.VersionApi(self.api.client).get_code(_request_timeout=10)
        except Exception as exc:            # any failure to reach the API server: one line, the reason
            raise RuntimeUnavailable(f"the API server of context {self.context!r} does not answer "
                                     f"({reason(exc)}) — is the cluster up? or use runtime=\"local\"") from exc

    # -- images: pushed to a registry, or already on the nodes ----------------------------------
    def _images(self, plan) -> str:
        if self.registry:
            return super()._images(plan)    # build, then _publish pushes them
        tag = compose_images.tag()          # content-addressed: what the nodes must hold
        wanted = {compose_images.reference(image, tag) for image in compose_images.IMAGES}
        if plan.has("prometheus"):
            wanted.add(f"scalelab/{images.NAME}:{images.tag()}")
        self._require_on_nodes(wanted)
        return tag

    def _require_on_nodes(self, wanted: set[str]) -> None:
        """Without a registry the nodes must hold the images already: one missing is named. The
        kubelet reports its node's images with its status, every 10 s: an image loaded a moment
        ago is waited for (bounded) before it is called missing."""
        def lacking() -> tuple[str, list[str]] | None:
            for node in self.core.list_node().items:
                listed = node.status.images or []
                if len(listed) >= NODE_STATUS_MAX_IMAGES:   # the kubelet lists only the largest 50: a miss
                    continue                               # proves nothing (a pod that cannot start says so)
                held = {name.split("/", 1)[1] if name.startswith("docker.io/") else name
                        for image in listed for name in image.names or []}
                if missing := sorted(wanted - held):
                    return node.metadata.name, missing
            return None

        deadline = time.monotonic() + NODE_STATUS_WAIT_S
        while (found := lacking()) and time.monotonic() < deadline:
            time.sleep(1)                                  # polling the nodes' reported images (bounded)
        if found:
            node, missing = found
            raise RuntimeUnavailable(f"node {node} lacks {len(missing)} of the stack's images "
                                     f"(e.g. {missing[0]}; `make images` builds them) — {LOAD_HINT}")

    @property
    def builds_images(self) -> bool:
        return bool(self.registry)

    def _publish(self, images: list[str]) -> None:
        if not self.registry:               # (lab 08's broker, started later): loaded by hand, or named
            self._require_on_nodes(set(images))
            return
        docker = self._docker()
        for reference in images:
            target = f"{self.registry}/{reference}"
            docker.images.get(reference).tag(target)
            for line in docker.images.push(target, stream=True, decode=True):
                if "error" in line:
                    raise ServiceFailed(f"pushing {target} failed: {line['error']} (is SCALELAB_REGISTRY "
                                        f"{self.registry} a registry this machine may push to?)")

    # -- metrics-server: the cluster's own when it has one ------------------------------------
    def _ensure_metrics_server(self) -> None:
        try:
            if self._metrics_api_available():
                return
        except Exception:                   # no such APIService yet: install ours below
            pass
        super()._ensure_metrics_server()

    def _check_entry_ports_free(self) -> None:
        """Entry points are port-forwards here: another stack's NodePorts do not matter."""

    def _render(self, plan) -> list[dict]:
        """The lab's objects with ClusterIP entry Services (a NodePort is cluster-wide — another
        stack, or someone else's Service, may hold 30080 — and not on this machine's 127.0.0.1),
        and pods that share their process namespace (freezing from inside: _freeze)."""
        objects = super()._render(plan)
        for obj in objects:
            if obj["kind"] in ("Deployment", "StatefulSet"):
                obj["spec"]["template"]["spec"]["shareProcessNamespace"] = True
            if obj["kind"] == "Service" and obj["spec"].get("type") == "NodePort":
                obj["spec"]["type"] = "ClusterIP"
                for port in obj["spec"].get("ports", []):
                    port.pop("nodePort", None)
        return objects

    # -- freezing from inside the pod (no node access) -----------------------------------------
    def _signal_in_pod(self, pod: str, signal: str) -> str:
        """SIGSTOP/SIGCONT to every container's process group of ``pod``, from a ``kubectl exec``
        in each container; each container's answer (``stopped``/``running``)."""
        found = self.core.read_namespaced_pod(pod, self.namespace)
        states = []
        for container in found.spec.containers:
            code, out = self.api.exec(self.namespace, pod, container.name,
                                      ["python", "-c", FREEZE_SCRIPT, signal], timeout=30)
            if code != 0:
                raise ServiceFailed(f"freezing {pod}/{container.name} from inside failed: {out.strip()[-300:]}")
            states.append(out.strip().splitlines()[-1] if out.strip() else "")
        return ",".join(states)

    def _freeze(self, pod: str, frozen: bool) -> None:
        self._signal_in_pod(pod, "STOP" if frozen else "CONT")

    def _kill_containers(self, pod: str) -> None:
        """SIGKILL the pod's servers from inside it, at once (as kind's ``ctr tasks kill`` from the
        node): a pod deleted with no grace period dies only when its kubelet gets to it, a second
        or more later — a drill's task of half a second finishes first. The pod is deleted next."""
        try:
            self._signal_in_pod(pod, "KILL")
        except Exception:                   # noqa: BLE001 — the exec may end with the container it killed;
            pass                            # the deletion that follows kills whatever is left

    def _frozen(self, pod: str) -> bool:
        return bool(pod) and "stopped" in self._signal_in_pod(pod, "STATE")


# Run by `python -c` in a container of a pod that shares its process namespace: the servers are
# the processes whose parent is outside the namespace (ppid 0), except PID 1 (the pause
# container), this very process and its parent (both started by the exec, ppid 0 too).
FREEZE_SCRIPT = """
import os, signal, sys
def ppid_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0]
mine = {os.getpid(), os.getppid()}
servers = []
for name in os.listdir("/proc"):
    if name.isdigit() and int(name) not in mine and int(name) != 1:
        try:
            parent, state = ppid_state(int(name))
            if parent == 0 and os.readlink(f"/proc/{name}/root") == os.readlink("/proc/self/root"):
                servers.append((int(name), state))
        except OSError:
            pass
what = sys.argv[1]
for pid, _ in servers:
    if what != "STATE":
        os.killpg(os.getpgid(pid), getattr(signal, "SIG" + what))
print("stopped" if what == "STOP" or (what == "STATE" and any(s == "T" for _, s in servers)) else "running")
"""
