"""The ``kind`` runtime: the ``kubernetes`` runtime on the local kind cluster of kind-config.yaml.

A member is a pod (``runtimes/kubernetes``). What kind adds:

* the cluster: created from ``kind-config.yaml`` (``scalelab``: one control plane, two
  workers) or re-used — its node image is kind's official one, or the one ``make
  kind-offline`` builds here (``cluster``); the host settings its nodes change are put back
  when it is deleted (``host``);
* images: the stack's images are built locally and ``kind load``ed into every node (no registry);
* entry points: the NodePorts kind-config.yaml publishes on 127.0.0.1 (30080: nginx, or the
  user service without it; 30081: the order service);
* freezing a pod (``kill(member, "STOP")``): ``ctr task pause`` of its containers in the node
  (a cgroup freeze, as ``docker pause``), which a remote cluster would not allow.

Beside it, ``registry`` runs a local image registry the nodes pull from (``make kind-registry``):
the cluster seen as "any cluster with a registry" by the ``kubernetes`` runtime.

``down()`` deletes the stack's namespace and keeps the cluster (creating one takes a minute);
``SCALELAB_KIND_DELETE_CLUSTER=1`` (``make kind-delete``) deletes the cluster too.
"""

import os
from pathlib import Path

from scalelab.runtimes.kind import cluster
from scalelab.runtimes.kubernetes.render import NODE_PORTS
from scalelab.runtimes.kubernetes.runtime import KubernetesRuntime
from scalelab.waiting import wait_until


class KindRuntime(KubernetesRuntime):
    name = "kind"

    def __init__(self, state_dir):
        cluster.require_tools()                  # kind, kubectl: one line each when missing
        self.docker = self._docker()             # the engine kind runs on (and builds the images)
        self.cluster = cluster.Cluster(Path(state_dir).resolve() / self.name)
        super().__init__(state_dir)
        if not self.cluster.exists():
            cluster.node_image(self.docker)      # no node image: say so now, not halfway through up()

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def _cluster_reachable(self) -> bool:
        return self.cluster.exists()

    @property
    def api(self):
        if self._api is None:
            if not self.cluster.exists():
                from scalelab.errors import ScalelabError
                raise ScalelabError("no kind cluster yet — is the stack up? (`stack.up()`)")
            # Written again each time: the cluster may have been made anew since this state dir saved
            # its kubeconfig (by another state dir, or make kind-delete and an up), on a new API port.
            self.cluster.write_kubeconfig()
        return super().api

    def _connect(self) -> None:
        self.cluster.ensure(self.docker)

    def _publish(self, images: list[str]) -> None:
        self.cluster.load(images, self.home / "load.log")
        self.cluster.load_metrics_server(self.docker, self.home / "load.log")

    def entry_url(self, service: str) -> str | None:
        node_port = NODE_PORTS.get(service)
        host_port = cluster.port_mappings().get(node_port) if node_port else None
        return f"http://127.0.0.1:{host_port}" if host_port else None

    # -- freezing: the pod's containers paused in their node (containerd's cgroup freezer) --------
    def _containers_in_node(self, pod: str) -> tuple[str, list[str]]:
        found = self.core.read_namespaced_pod(pod, self.namespace)
        ids = [c.container_id.split("://", 1)[1] for c in found.status.container_statuses or [] if c.container_id]
        return found.spec.node_name, ids

    def _freeze(self, pod: str, frozen: bool) -> None:
        node, ids = self._containers_in_node(pod)
        for container in ids:
            out = cluster._run(["docker", "exec", node, "ctr", "--namespace", "k8s.io", "tasks",
                                "pause" if frozen else "resume", container], timeout=60, check=False)
            if out.returncode != 0 and "not paused" not in out.stderr and "already paused" not in out.stderr:
                from scalelab.errors import ServiceFailed
                raise ServiceFailed(f"ctr tasks {'pause' if frozen else 'resume'} {container[:12]} in {node} failed: "
                                    f"{out.stderr.strip()[-300:]}")

    def _kill_containers(self, pod: str) -> None:
        node, ids = self._containers_in_node(pod)
        for container in ids:
            cluster._run(["docker", "exec", node, "ctr", "--namespace", "k8s.io", "tasks", "kill", "--signal",
                          "SIGKILL", container], timeout=60, check=False)    # (a task already gone: nothing to do)

        def all_gone() -> bool:
            listed = cluster._run(["docker", "exec", node, "ctr", "--namespace", "k8s.io", "tasks", "ls"],
                                  timeout=60, check=False).stdout
            return not any(line.startswith(c) and "RUNNING" in line for c in ids for line in listed.splitlines())
        wait_until(all_gone, 30, interval=0.1)   # polling containerd until the processes are gone (bounded)

    def _frozen(self, pod: str) -> bool:
        if not pod:
            return False
        node, ids = self._containers_in_node(pod)
        for container in ids[:1]:
            out = cluster._run(["docker", "exec", node, "ctr", "--namespace", "k8s.io", "tasks", "ls"],
                               timeout=60, check=False)
            for line in out.stdout.splitlines():
                if line.startswith(container):
                    return "PAUSED" in line
        return False

    def down(self) -> None:
        super().down()
        if os.environ.get("SCALELAB_KIND_DELETE_CLUSTER") == "1":
            self.cluster.delete()
