"""The stack on a Kubernetes cluster: a member is a pod.

``KubernetesRuntime`` does everything that holds on any cluster; how to reach the cluster,
how images get there and where the entry points are is its subclasses' (``runtimes/kind``:
the local kind cluster, images ``kind load``ed, entries on NodePorts kind publishes on
127.0.0.1).

``up()``: images published, metrics-server applied (cluster-wide, kept), the lab's overlay
(``stack/deploy/k8s/overlays/labNN``) rendered through a kustomization written in the state
directory (``render``) and server-side applied in a namespace of the stack's own, every
rollout watched until done, then the members named and nginx given its upstream.

Members are named as on ``local``: ``postgres``, ``users-1``.., ``redis-1``, ``nginx-1``. Pods
of a Deployment get generated names; the driver numbers them in the order they appear (a
pod that replaces one takes the number it frees, or the lowest free one) and tells each shop
pod its member name (``members``), which the pod waits for before it starts, so
``X-Instance``, a worker's Celery name and Prometheus' ``instance`` label read the same on
every runtime.

What the protocol's operations are on Kubernetes:
* ``kill(member, KILL|TERM|INT)``: the member's workload is scaled down by one with that pod
  chosen (``pod-deletion-cost``), and the pod deleted — with no grace period for KILL (its
  containers get SIGKILL), with its grace period (SIGTERM, preStop) otherwise. As on local,
  it stays down until ``start(member)``, which scales the workload up again (a bare
  ``kubectl delete pod`` would be replaced at once: the notebooks say so);
* ``kill(member, STOP|CONT)``: freezes / thaws the pod's containers (a cgroup freeze, as
  ``docker pause``) where the subclass can reach the nodes (kind); refused elsewhere;
* ``restart(member)``: the pod deleted gracefully; its controller's replacement takes the name;
* ``reload("nginx")``: the upstream re-rendered and loaded with ``nginx -s reload`` in the pod
  (``nginx``); other services: a rolling restart of their pods, one at a time.
"""

import hashlib
import os
import time
from pathlib import Path
from typing import Any, cast

import pandas as pd

from scalelab.errors import ScalelabError, ServiceFailed
from scalelab.paths import STATE_LOCK
from scalelab.plans import Plan, plan_for
from scalelab.runtimes.common import images as compose_images
from scalelab.runtimes.common import nginx as common_nginx
from scalelab.runtimes.common import state
from scalelab.runtimes.common.members import no_member
from scalelab.runtimes.common.nginx import UPSTREAM, TlsEntry, has_tls, no_tls, wait_until_routed
from scalelab.runtimes.compose import env as compose_env
from scalelab.runtimes.compose.nginx import REDIRECT_PORT, TLS_PORT
from scalelab.runtimes.kubernetes import images, kafka, nginx, prometheus, render, standby
from scalelab.runtimes.kubernetes import members as naming
from scalelab.runtimes.kubernetes.api import Api, cores, kube, not_found, ready
from scalelab.runtimes.kubernetes.forward import Forwards
from scalelab.waiting import wait_until

K8S = render.K8S
# Each service's port inside its pods (relay and projector listen on nothing).
PORTS = {"postgres": 5432, "standby": 5432, "users": 8000, "redis": 6379, "nginx": 8080, "orders": 8000,
         "worker": 9100, "prometheus": 9090, "relay": None, "projector": None, "rabbitmq": 5672, "express": 8000,
         "green": 8000, "kafka": 9094}   # kafka: its EXTERNAL listener, the one the driver forwards to
FRONTS = {"nginx": "users"}            # while nginx runs, url("users") is the entry (nginx)
COMPANIONS = {"live": "green"}          # entry Services that come with a service (lab 06's blue-green Service)
STATEFUL = {"postgres", "standby", "rabbitmq", "kafka"}   # StatefulSets (a volume each); the others are Deployments
READY_TIMEOUT = float(os.environ.get("SCALELAB_KIND_READY_TIMEOUT", "300"))
ENTRY_ROUTED_S = 30             # a restarted member behind its own entry (no nginx): the entry routes to it
SIGNALS = ("KILL", "TERM", "INT", "STOP", "CONT")
PART_OF = "app.kubernetes.io/part-of=scalelab"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


class KubernetesRuntime:
    """A member is a pod, on the cluster a subclass connects to (``kind``: the local kind
    cluster; ``kubernetes``: any kubeconfig context)."""
    name = "kubernetes"
    context: str | None = None          # the kubeconfig context (None: the file's current one)
    registry: str | None = None         # where the nodes pull the images from (None: loaded into them)

    def __init__(self, state_dir):
        self.home = Path(state_dir).resolve() / self.name
        self.home.mkdir(parents=True, exist_ok=True)
        self.namespace = "scalelab-" + hashlib.sha1(str(self.home).encode()).hexdigest()[:8]
        self._state_file = self.home / "state.json"
        self.lab: int | None = None
        self.tag: str | None = None
        self.workspace: Path | None = None
        self.names = naming.Names()
        self._api: Api | None = None
        self._load()
        self.forwards = Forwards(self.kubeconfig, self.namespace, self.home / "port-forward.log", self.context)

    # -- what a subclass provides ----------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        raise NotImplementedError

    def _connect(self) -> None:
        """Make the cluster reachable (kind: create or re-use it); before anything else in up()."""

    def _images(self, plan: Plan) -> str:
        """Build the stack's images (content-addressed tag) — and lab 07's Prometheus with
        Kubernetes service discovery — and make them pullable by the cluster's nodes; the tag."""
        docker, log = self._docker(), self.home / "build.log"
        tag = compose_images.ensure(docker, log)
        wanted = [compose_images.reference(image, tag) for image in compose_images.IMAGES]
        if plan.has("prometheus"):
            wanted.append(images.prometheus(docker, self.home, log))
        self._publish(wanted)
        return tag

    def _publish(self, images: list[str]) -> None:
        """Make the stack's images pullable by the cluster's nodes (kind: ``kind load``)."""
        raise NotImplementedError

    @property
    def builds_images(self) -> bool:
        """Whether this runtime builds the images it publishes (else the nodes hold them already)."""
        return True

    def entry_url(self, service: str) -> str | None:
        """The host URL of a service's entry Service (kind: a NodePort on 127.0.0.1), or None."""
        return None

    def _freeze(self, pod: str, frozen: bool) -> None:
        raise ScalelabError(f"freezing a pod (STOP/CONT) needs access to its node, which runtime "
                            f"{self.name!r} does not have: use KILL or TERM")

    # -- persisted state ----------------------------------------------------------------
    def _load(self) -> None:
        if self._state_file.exists():
            self.lab, self.workspace, data = state.read(self._state_file)
            self.tag = data.get("tag")
            self.names = naming.Names.from_json(data.get("names", {}))

    def _save(self) -> None:
        state.write(self._state_file, self.lab, self.workspace,
                    lambda: {"tag": self.tag, "namespace": self.namespace, "names": self.names.to_json()})

    # -- the Kubernetes API ---------------------------------------------------------------
    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.kubeconfig, self.context)
        return self._api

    @property
    def core(self):
        return self.api.core

    @property
    def apps(self):
        return self.api.apps

    def apply(self, objects: list[dict], dry_run: bool = False, field_manager: str | None = None) -> None:
        self.api.apply(objects, dry_run=dry_run, **({"field_manager": field_manager} if field_manager else {}))

    def exec(self, member: str, argv: list[str], timeout: float = 60) -> tuple[int, str]:
        """Run ``argv`` in the member's container (``kubectl exec``)."""
        return self.api.exec(self.namespace, self.pod(member), self._service(member), argv, timeout)

    def _namespace_exists(self) -> bool:
        from kubernetes.client.exceptions import ApiException
        try:
            namespace = self.core.read_namespace(self.namespace)
        except ApiException as exc:
            if not_found(exc):
                return False
            raise
        return namespace.status.phase != "Terminating"

    # -- the protocol -----------------------------------------------------------------------
    def running_lab(self) -> int | None:
        if self.lab is None or not self._cluster_reachable():
            return None
        return self.lab if self._namespace_exists() else None

    def _cluster_reachable(self) -> bool:
        return True

    def up(self, plan: Plan, workspace: Path) -> bool:
        if self.running_lab() not in (None, plan.lab):
            self.down()
        elif self.lab is None and self._cluster_reachable() and self._namespace_exists():
            self.down()       # this state dir's namespace, left by a run whose state is gone: start clean
        render.overlay(plan.lab)                       # a lab without an overlay: one line, before any work
        self._connect()
        self._api = None                               # a (re)created cluster has a new kubeconfig
        self.lab, self.workspace = plan.lab, Path(workspace).resolve()
        self.tag = self._images(plan)
        self._save()
        self._ensure_metrics_server()
        self._check_entry_ports_free()
        started = not self._namespace_exists()
        if started:
            self._wait_namespace_gone()                # a namespace still terminating (a recent down()) first
            self.names = naming.Names()
        objects = self._render(plan)
        if not started:                                # a stack that runs keeps its scale (scale(), kill(), the HPA)
            for obj in objects:
                if obj["kind"] in ("Deployment", "StatefulSet"):
                    obj["spec"].pop("replicas", None)
        before = self._generations()
        self.apply([o for o in objects if o["kind"] != "HorizontalPodAutoscaler"])   # the HPA: autoscaler()
        self._prune(objects)
        started |= before != self._generations()
        self.wait_ready()
        if plan.has("standby"):                        # after the primary: its side of replication first
            started |= standby.ensure(self, plan.replicas["standby"])
        if plan.has("prometheus"):
            prometheus.ensure(self)
        if plan.has("nginx"):
            nginx.configure(self, strict=False)
        self._save()
        return started

    def _docker(self):
        from scalelab.runtimes.common.engine import connect
        return connect()                               # builds the images (and runs kind's nodes)

    def _render(self, plan: Plan) -> list[dict]:
        directory = render.write_kustomization(self.home, plan, self.namespace, self.tag or "dev", self.workspace,
                                               self.registry)
        return render.render(directory)

    def _generations(self) -> dict[str, int]:
        if not self._namespace_exists():
            return {}
        found = {f"deploy/{d.metadata.name}": d.metadata.generation
                 for d in self.apps.list_namespaced_deployment(self.namespace).items}
        found.update({f"sts/{s.metadata.name}": s.metadata.generation
                      for s in self.apps.list_namespaced_stateful_set(self.namespace).items})
        return found

    def _prune(self, objects: list[dict]) -> None:
        """Delete this stack's objects the render no longer has (old generated ConfigMaps, a
        service an earlier lab ran), so the namespace holds exactly the lab's stack."""
        wanted = {(o["kind"], o["metadata"]["name"]) for o in objects}
        listers = {"ConfigMap": (self.core.list_namespaced_config_map, self.core.delete_namespaced_config_map),
                   "Secret": (self.core.list_namespaced_secret, self.core.delete_namespaced_secret),
                   "Service": (self.core.list_namespaced_service, self.core.delete_namespaced_service),
                   "Deployment": (self.apps.list_namespaced_deployment, self.apps.delete_namespaced_deployment),
                   "StatefulSet": (self.apps.list_namespaced_stateful_set, self.apps.delete_namespaced_stateful_set)}
        for kind, (lister, deleter) in listers.items():
            for item in lister(self.namespace, label_selector=PART_OF).items:
                if (kind, item.metadata.name) not in wanted:
                    deleter(item.metadata.name, self.namespace)

    def _ensure_metrics_server(self) -> None:
        """metrics-server in kube-system (kept with the cluster; re-applied, so a changed manifest
        reaches a kept cluster), waited for: the HPA reads it, and while its APIService is
        unavailable the API server cannot finish deleting any namespace (a stack's down())."""
        self.apply(render.render_repo(K8S / "metrics-server"))
        wait_until(self._metrics_api_available, 120, interval=1, error=ServiceFailed,
                   on_timeout=lambda _: "metrics-server not available after 120 s "
                                        "(the HPA and namespace deletion need it):\n"
                                        + self._why_not_ready("metrics-server", namespace="kube-system",
                                                              selector="k8s-app=metrics-server"))

    def _metrics_api_available(self) -> bool:
        from kubernetes import client
        service: Any = client.ApiregistrationV1Api(self.api.client).read_api_service("v1beta1.metrics.k8s.io")
        return any(c.type == "Available" and c.status == "True" for c in service.status.conditions or [])

    def _check_entry_ports_free(self) -> None:
        """NodePorts are cluster-wide: another stack's namespace holding one of the lab's is named."""
        wanted = set(render.NODE_PORTS.values())
        for service in self.core.list_service_for_all_namespaces(label_selector=PART_OF).items:
            if service.metadata.namespace == self.namespace:
                continue
            if any(port.node_port in wanted for port in service.spec.ports or []):
                raise ScalelabError(f"NodePort {', '.join(map(str, sorted(wanted)))} held by another stack's namespace "
                                    f"{service.metadata.namespace} — bring that stack down (stack.down()) or "
                                    f"`kubectl delete namespace {service.metadata.namespace}`")

    def down(self) -> None:
        """Delete the stack's namespace (every pod, volume and secret in it) and wait until it is
        gone. Safe to call twice."""
        from kubernetes.client.exceptions import ApiException
        self.forwards.close()
        if self._cluster_reachable():
            try:
                self.core.delete_namespace(self.namespace, propagation_policy="Foreground")
            except ApiException as exc:
                if not not_found(exc):
                    raise
            self._wait_namespace_gone()
        self.lab = None
        self.names = naming.Names()
        self._save()

    def _wait_namespace_gone(self, timeout: float = 180) -> None:
        from kubernetes.client.exceptions import ApiException
        _, _, watch, _ = kube()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.core.read_namespace(self.namespace)
            except ApiException as exc:
                if not_found(exc):
                    return
                raise
            stream = watch.Watch()      # (re-read each 10 s: a deletion between read and watch is not missed)
            for event in stream.stream(self.core.list_namespace, field_selector=f"metadata.name={self.namespace}",
                                       timeout_seconds=10):
                if event["type"] == "DELETED":
                    stream.stop()
                    return
        raise ServiceFailed(f"namespace {self.namespace} still terminating after {timeout:.0f}s — "
                            f"`kubectl get all -n {self.namespace}` shows what holds it")

    def wipe(self) -> None:
        """``down(purge=True)``: also forget this stack's passwords and rendered files."""
        import shutil
        for path in (self.home / "kustomize", self.home / "secrets.json", self.home / "state.json", self.home / "logs"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # -- entry points -------------------------------------------------------------------------
    def _front(self, service: str) -> str:
        """The service that fronts ``service`` in this lab (nginx for users), else ``service``."""
        plan = plan_for(self.lab) if self.lab else None
        return next((front for front, fronted in FRONTS.items() if fronted == service and plan and plan.has(front)),
                    service)

    def url(self, service: str) -> str:
        service = self._front(service)
        if not (lab := self.running_lab()) or not plan_for(lab).has(COMPANIONS.get(service, service)):
            raise ScalelabError(f"no {service} in this stack — is it up? (`stack.up()`)")
        entry = self.entry_url(service)
        if entry:
            return entry
        if service in COMPANIONS:
            raise ScalelabError(f"the Service {service} is not published on this machine (on kind: a NodePort "
                                "kind-config.yaml maps to 127.0.0.1)")
        return self.member_url(self.members(service)[0])

    def inside_url(self, service: str) -> str:
        """How the stack's own pods reach ``service``: its front's Service name in the namespace."""
        front = self._front(service)
        return f"http://{front}:{PORTS[front]}"

    def member_url(self, member: str) -> str:
        port = PORTS[self._service(member)]
        if port is None:
            raise ScalelabError(f"{member} listens on no port")
        return f"http://127.0.0.1:{self._forward(member, port)}"

    def _forward(self, member: str, port: int) -> int:
        """A local port forwarded to the member's pod, kept across its pods (forward.py)."""
        self.pod(member)                          # no such member, or down: its one-line error now
        return self.forwards.port(member, port, lambda: self._pod_identity(member))

    def _pod_identity(self, member: str) -> tuple[str, str]:
        """(name, uid) of the member's pod: a killed StatefulSet member comes back under its old name."""
        name, pod = self._member_pod(member)
        return name, pod.metadata.uid if pod is not None else ""

    def database_url(self, role: str = "app", member: str | None = None) -> str:
        pw = compose_env.passwords(self.home)
        port = self._forward(member or "postgres", cast(int, PORTS["postgres"]))
        if role == "app":
            return f"postgresql://shop:{pw['shop']}@127.0.0.1:{port}/shop"
        return f"postgresql://postgres:{pw['postgres']}@127.0.0.1:{port}/postgres"

    # -- lab 04: the standby made by base backup (standby.py) --------------------------------
    def configure_replication(self, config) -> dict:
        return standby.configure(self, config)

    def rebuild_standby(self, member: str) -> float:
        return standby.rebuild(self, member)

    # -- lab 07: Prometheus' alert rules (prometheus.py) ----------------------------------------
    def check_alert_rules(self, path: Path) -> str | None:
        return prometheus.check_rules(self, path)

    def install_alert_rules(self, path: Path | None) -> None:
        prometheus.install_rules(self, path)

    def tls_entry(self) -> TlsEntry:
        """nginx's HTTPS and the plain port that redirects to it (lab 02), through port-forwards
        to the nginx pod (the port the redirect names is the HTTPS forward's)."""
        if not has_tls(self.lab):
            raise no_tls(self.lab)
        https, redirect = self._forward("nginx-1", TLS_PORT), self._forward("nginx-1", REDIRECT_PORT)
        return TlsEntry(f"https://127.0.0.1:{https}", f"http://127.0.0.1:{redirect}", self.home / "tls" / "ca.pem",
                        self.home / "tls" / "edge.pem")

    # -- lab 08 on Kafka (kafka.py) ---------------------------------------------------------
    def kafka_bootstrap(self) -> str:
        return kafka.bootstrap(self)

    def reconnect_event_log(self) -> None:
        kafka.reconnect(self)

    def rabbitmq_url(self) -> str:
        port = self._forward("rabbitmq-1", cast(int, PORTS["rabbitmq"]))
        return f"amqp://shop:{compose_env.passwords(self.home)['rabbitmq']}@127.0.0.1:{port}//"

    def redis_url(self) -> str:
        port = self._forward("redis-1", cast(int, PORTS["redis"]))
        return f"redis://:{compose_env.passwords(self.home)['redis']}@127.0.0.1:{port}/0"

    # -- members ----------------------------------------------------------------------------
    @staticmethod
    def _service(member: str) -> str:
        return "postgres" if member == "postgres" else member.rsplit("-", 1)[0]

    def _pods(self, service: str) -> list:
        """The service's pods that are not being deleted, oldest first."""
        if not self._namespace_exists():
            return []
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=_pods_of(service)).items
        live = [p for p in pods
                if p.metadata.deletion_timestamp is None and p.status.phase not in ("Succeeded", "Failed")]
        return sorted(live, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))

    def _members_of(self, service: str) -> dict[str, str | None]:
        """member -> pod (None for a member killed and not started again). New pods are numbered
        and, once their container runs, told their member name."""
        return self._members_and_pods(service)[0]

    def _members_and_pods(self, service: str) -> tuple[dict[str, str | None], dict]:
        """_members_of, and the pod objects it read (by name): one list call for both."""
        pods = self._pods(service)
        with STATE_LOCK:                            # a drill's faults ask from threads of their own
            if self.names.number(service, [p.metadata.name for p in pods]):
                self._save()
            found = self.names.members(service)
            untold = [(pod, member) for pod in pods
                      if (member := self.names.member_of(service, pod.metadata.name))
                      and self.names.told.get(pod.metadata.name) != member and naming.can_tell(pod)]
        for pod, member in untold:
            naming.tell(self, pod, member)
            with STATE_LOCK:
                self.names.told[pod.metadata.name] = member
                self._save()
        return found, {p.metadata.name: p for p in pods}

    def members(self, service: str) -> list[str]:
        return list(self._members_of(service))

    def pod(self, member: str) -> str:
        """The pod a member runs as now."""
        return self._member_pod(member)[0]

    def _member_pod(self, member: str) -> tuple[str, Any]:
        """The name of the pod a member runs as now, and that pod as listed (None if it just went)."""
        found, pods = self._members_and_pods(self._service(member))
        if member not in found:
            raise no_member(member, found, of=self._service(member))
        if (pod := found[member]) is None:
            raise ScalelabError(f"{member} is down (killed): start it with stack.start({member!r})")
        return pod, pods.get(pod)

    # -- changing the running stack -----------------------------------------------------------
    def _workload(self, service: str):
        if service in STATEFUL:
            return self.apps.read_namespaced_stateful_set(service, self.namespace)
        return self.apps.read_namespaced_deployment(service, self.namespace)

    def _set_replicas(self, service: str, replicas: int) -> None:
        patch = {"spec": {"replicas": replicas}}
        if service in STATEFUL:
            self.apps.patch_namespaced_stateful_set_scale(service, self.namespace, patch)
        else:
            self.apps.patch_namespaced_deployment_scale(service, self.namespace, patch)

    def scale(self, service: str, replicas: int) -> None:
        if service == "postgres":
            raise ScalelabError("postgres is not scaled with scale(): it has one primary")
        if replicas < 0:
            raise ScalelabError(f"replicas must be >= 0, got {replicas}")
        if service == kafka.SERVICE and replicas:   # lab 08: its image reaches the nodes on first use
            if self.forwards.known(kafka.MEMBER, kafka.EXTERNAL) is None:
                kafka.check_port_free(kafka.external_port(self.home))
            kafka.publish_image(self)
        current = [m for m, pod in self._members_of(service).items() if pod]
        leaving = current[replicas:]
        if leaving and service in UPSTREAM:
            nginx.members_changed(self, service, without=set(leaving))   # out of rotation first
        followers = {}
        for member in leaving:
            pod = self.pod(member)
            self._mark_for_deletion(pod)
            followers[pod] = (member, self._follow_log(pod, service))
        self.names.forget_down(service)
        self._set_replicas(service, replicas)
        for pod, (member, follower) in followers.items():    # scaled in: gone (as a stopped process is)
            self.forwards.drop(member)
            self._wait_pod_gone(pod, keep_log_of=member, follower=follower)
        self.wait_ready([service])
        self._members_changed(service)

    def _mark_for_deletion(self, pod: str) -> None:
        """Make ``pod`` the one its ReplicaSet removes when scaled down by one."""
        self.core.patch_namespaced_pod(pod, self.namespace,
                                       {"metadata": {"annotations": {DELETION_COST: "-1000000"}}})

    def kill(self, member: str, signal: str = "KILL") -> None:
        if signal not in SIGNALS:
            raise ScalelabError(f"unknown signal {signal!r}: use one of {', '.join(SIGNALS)}")
        service = self._service(member)
        if signal in ("STOP", "CONT"):
            self._freeze(self.pod(member), frozen=signal == "STOP")
            return
        pod = self.pod(member)
        replicas = self._workload(service).spec.replicas or 0
        if service not in STATEFUL:
            self._mark_for_deletion(pod)
        with STATE_LOCK:
            self.names.down(service, member)
            self._save()
        self._set_replicas(service, max(replicas - 1, 0))     # it stays down until start()
        follower = self._follow_log(pod, service)
        if signal == "KILL":
            self._kill_containers(pod)                        # SIGKILL now, before any preStop or SIGTERM
        self._delete_pod(pod, 0 if signal == "KILL" else None)   # None: its terminationGracePeriodSeconds
        self._wait_pod_gone(pod, keep_log_of=member, follower=follower)

    def _kill_containers(self, pod: str) -> None:
        """SIGKILL the pod's processes where the runtime reaches its node (kind). Elsewhere the pod
        is deleted with no grace period: the kubelet kills its containers at once."""

    def _delete_pod(self, pod: str, grace: int | None) -> None:
        from kubernetes.client.exceptions import ApiException
        try:
            self.core.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=grace)
        except ApiException as exc:
            if not not_found(exc):
                raise

    def _follow_log(self, pod: str, service: str, tail: int = 400) -> "LogFollower":
        """Start reading the pod's log to its end (``kubectl logs -f``), before the pod is stopped:
        its last lines (a graceful shutdown's) come just before its container goes."""
        return LogFollower(self.core, self.namespace, pod, service, tail)

    def _wait_pod_gone(self, pod: str, keep_log_of: str | None = None, follower: "LogFollower | None" = None,
                       timeout: float = 90) -> None:
        """Until the pod object is gone (its containers have exited). With ``keep_log_of``, what
        ``follower`` read of its log is kept as the member's earlier log: ``logs()`` shows it
        before the new pod's, as a process's log file spans its restarts on local."""
        from kubernetes.client.exceptions import ApiException

        def gone() -> bool:
            try:
                self.core.read_namespaced_pod(pod, self.namespace)
            except ApiException as exc:
                if not_found(exc):
                    return True
                raise
            return False
        wait_until(gone, timeout, interval=0.25, error=ServiceFailed,   # polling the pod's end (bounded)
                   on_timeout=f"pod {pod} still there {timeout:.0f}s after its deletion")
        text = follower.result() if follower else ""
        if keep_log_of and text:
            earlier = self.home / "logs" / f"{keep_log_of}.earlier.log"
            earlier.parent.mkdir(parents=True, exist_ok=True)
            earlier.write_text((earlier.read_text() if earlier.exists() else "")[-200_000:] + text)

    def start(self, member: str) -> None:
        """Bring a killed member back (its workload scaled up again: a new pod takes its name) or
        thaw a frozen one, and wait until it is ready."""
        service = self._service(member)
        found = self._members_of(service)
        if member not in found:
            raise no_member(member, found, of=service)
        if (pod := found[member]) is not None:
            if self._frozen(pod):
                self._freeze(pod, frozen=False)
        else:
            self._sync_workspace()                   # a started member runs the files as they are now
            with STATE_LOCK:
                self.names.starting(service, member)
                self._save()
            self._set_replicas(service, (self._workload(service).spec.replicas or 0) + 1)
        self._wait_member_ready(member)
        self._members_changed(service, restarted=member)

    def _frozen(self, pod: str) -> bool:
        return False

    def restart(self, member: str) -> None:
        """Graceful: out of nginx's rotation, the pod deleted (preStop, then SIGTERM within its
        grace period); its controller's replacement takes the name; back in rotation when ready."""
        service = self._service(member)
        pod = self.pod(member)
        # As a Deployment's maxUnavailable 0: the others serve first. A pod whose readiness probe
        # failed a moment ago (the database was down) is Ready again only after its next probe.
        for other, other_pod in self._members_of(service).items():
            if other != member and other_pod is not None:
                self._wait_member_ready(other)
        if service in UPSTREAM:
            nginx.members_changed(self, service, without={member})
        self._sync_workspace()                       # the replacement mounts the learner's files as they are now
        self.names.starting(service, member)
        self._save()
        follower = self._follow_log(pod, service)
        self._delete_pod(pod, None)
        self._wait_pod_gone(pod, keep_log_of=member, follower=follower)   # (its replacement starts meanwhile)
        self._wait_member_ready(member, not_pod=pod)
        self._members_changed(service, restarted=member)
        if self._front(service) == service and (entry := self.entry_url(service)):
            # No nginx in front: the Service's endpoints changed, and the node's proxy follows them a
            # moment later (longer on a busy node) — the entry answers from the new pod first.
            if not wait_until_routed(entry, member, ENTRY_ROUTED_S):
                raise ServiceFailed(f"{member} is ready but {entry} did not route to it within {ENTRY_ROUTED_S} s "
                                    f"(the {service} Service's endpoints: kubectl get endpointslices -l "
                                    f"kubernetes.io/service-name={service})")

    def reload(self, service: str) -> None:
        """nginx: the upstream re-rendered and loaded (``nginx -s reload`` in the pod: a refused
        file raises nginx's own complaint). Other services: the lab's manifests re-applied (a
        changed workspace file is a new ConfigMap) and the pods restarted one by one."""
        if self.lab is None:
            raise ScalelabError("the stack is not up — `stack.up()` first")
        if service == "nginx":
            nginx.configure(self, strict=True)
            return
        self._sync_workspace()
        for member in self.members(service):
            self.restart(member)

    def follow_members(self, service: str) -> None:
        """Pods another controller made or removed (the HPA): named, and nginx's upstream
        re-rendered when the ready pods are not the ones it has."""
        pods = {p.metadata.name: p for p in self._pods(service)}
        ready_now = sorted(m for m, pod in self._members_of(service).items() if pod in pods and ready(pods[pod]))
        if ready_now != self.names.routed.get(service):
            self._members_changed(service)

    def _members_changed(self, service: str, restarted: str | None = None) -> None:
        """Pods of ``service`` came or went: nginx's upstream follows (as an ingress controller's)."""
        if service in UPSTREAM and plan_for(cast(int, self.lab)).has("nginx"):
            nginx.members_changed(self, service, restarted=restarted)
        elif service == "nginx":
            nginx.configure(self, strict=False)

    def _sync_workspace(self) -> None:
        """The ``workspace`` ConfigMap = the lab workspace's files now (created, updated or deleted):
        a pod started from now on mounts them (as on local, a running member keeps what it loaded)."""
        from kubernetes.client.exceptions import ApiException
        if self.lab is None or plan_for(self.lab).exercises == ():
            return
        rendered = [o for o in self._render(plan_for(self.lab)) if o["kind"] == "ConfigMap"]
        self.apply([o for o in rendered if o["metadata"]["name"] == "valkey-broker"])   # broker.yaml's, lab 05
        found = [o for o in rendered if o["metadata"]["name"] == "workspace"]
        if found:
            self.apply(found)
            return
        try:
            self.core.delete_namespaced_config_map("workspace", self.namespace)
        except ApiException as exc:
            if not not_found(exc):
                raise

    def route(self, shares: dict[str, int] | None) -> None:
        common_nginx.route(self, shares)

    def logs(self, member: str, tail: int = 40) -> str:
        """The member's log: its earlier pods' (kept when they ended), then its pod's now."""
        earlier = self.home / "logs" / f"{member}.earlier.log"
        lines = earlier.read_text().splitlines() if earlier.exists() else []
        found = self._members_of(self._service(member))
        if found.get(member):
            now = self.core.read_namespaced_pod_log(found[member], self.namespace, container=self._service(member),
                                                    tail_lines=tail)
            lines += (now or "").splitlines()
        elif member not in found:
            self.pod(member)                                  # no such member: its one-line error
        return "\n".join(lines[-tail:])

    def status(self) -> pd.DataFrame:
        rows = []
        plan = plan_for(self.lab) if self.lab else None
        on_demand = [kafka.SERVICE] if plan and plan.has("relay") else []   # lab 08's broker, once started
        for service in (*plan.replicas, *on_demand) if plan else ():
            pods = {p.metadata.name: p for p in self._pods(service)}
            for member, pod in self._members_of(service).items():
                status: Any = pods[pod].status if pod in pods else None
                running = bool(status and status.container_statuses and all(c.ready for c in status.container_statuses))
                state = "running" if running else (status.phase.lower() if status else "stopped")
                if running and pod is not None and self._frozen(pod):   # running: pod is one of pods
                    state = "paused"
                rows.append({"member": member, "pid": None,
                             "port": self.forwards.known(member, port) if (port := PORTS[service]) else None,
                             "state": state, "log": f"kubectl -n {self.namespace} logs {pod}" if pod else None,
                             "started": pd.Timestamp(status.start_time) if running and status.start_time else None})
        return pd.DataFrame(rows, columns=["member", "pid", "port", "state", "log", "started"])

    # -- readiness ----------------------------------------------------------------------------
    def wait_ready(self, services: list[str] | None = None, timeout: float = READY_TIMEOUT) -> None:
        """Until each workload's rollout is complete (kubectl rollout status's rule) and each of
        its pods knows its member name (a new shop pod waits for it before it starts)."""
        assert self.lab is not None   # only while a stack is up (up() sets it first)
        plan = plan_for(self.lab)
        deadline = time.monotonic() + timeout
        for service in services or list(plan.replicas):
            stateful = service in STATEFUL
            lister = self.apps.list_namespaced_stateful_set if stateful else self.apps.list_namespaced_deployment
            done = _statefulset_done if stateful else _deployment_done

            def rolled_out(service=service, lister=lister, done=done) -> bool:
                self._members_of(service)                   # numbers and names the new pods
                items = lister(self.namespace, field_selector=f"metadata.name={service}").items
                if not items:
                    raise ServiceFailed(f"no {service} workload in namespace {self.namespace}")
                return done(items[0])

            def not_rolled_out(_: Any, service: str = service) -> str:
                return f"{service} not rolled out after {timeout:.0f}s:\n{self._why_not_ready(service)}"
            wait_until(rolled_out, deadline - time.monotonic(), interval=0.25, error=ServiceFailed,
                       on_timeout=not_rolled_out)

    def _wait_member_ready(self, member: str, not_pod: str | None = None, timeout: float = READY_TIMEOUT) -> None:
        """Until ``member`` is a pod (other than ``not_pod``) whose Ready condition is True."""
        service = self._service(member)

        def member_ready() -> bool:
            found, pods = self._members_and_pods(service)
            pod_name = found.get(member)
            return bool(pod_name and pod_name != not_pod and pod_name in pods and ready(pods[pod_name]))
        wait_until(member_ready, timeout, interval=0.25, error=ServiceFailed,
                   on_timeout=lambda _: f"{member} not ready after {timeout:.0f}s:\n{self._why_not_ready(service)}")

    def _why_not_ready(self, service: str, namespace: str | None = None, selector: str | None = None) -> str:
        """The pods' waiting reasons and the last log lines of one: what `kubectl describe` would show."""
        namespace = namespace or self.namespace
        lines = []
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector or _pods_of(service)).items
        for pod in pods:
            for status in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
                waiting = status.state.waiting if status.state else None
                if waiting or not status.ready:
                    lines.append(f"  {pod.metadata.name}/{status.name}: "
                                 f"{waiting.reason if waiting else 'not ready'}"
                                 f"{' — ' + waiting.message[:160] if waiting and waiting.message else ''}")
        if pods:
            try:
                tail = self.core.read_namespaced_pod_log(pods[-1].metadata.name, namespace,
                                                         container=service, tail_lines=10)
                lines.append(f"  {pods[-1].metadata.name} log ends with:\n{tail}")
            except Exception:
                pass
        return "\n".join(lines) or "  (no pods: `kubectl get events -n " + namespace + "`)"

    # -- metrics and autoscaling ------------------------------------------------------------------
    def cpu_seconds(self, member: str) -> float:
        """CPU time (seconds) the member's container has used: its cgroup's counter, read from
        inside the pod (cgroup v2 ``cpu.stat``, or v1 ``cpuacct.usage``) — exact, where
        metrics-server would give a 15 s average."""
        code, out = self.exec(member, ["python", "-c", CPU_SECONDS_SCRIPT], timeout=30)
        try:
            return float(out.strip().splitlines()[-1]) if code == 0 else float("nan")
        except (ValueError, IndexError) as exc:
            raise ScalelabError(f"{member} reports no CPU usage ({out.strip()[-200:]}): is it running? "
                                "(stack.status())") from exc

    def pod_metrics(self, service: str) -> dict[str, float]:
        """CPU (cores) per pod of ``service`` from the metrics API (what `kubectl top pods` shows)."""
        from kubernetes import client
        custom = client.CustomObjectsApi(self.api.client)
        found = cast(dict[str, Any],   # the JSON object (the client's stubs say object)
                     custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", self.namespace, "pods",
                                                          label_selector=_pods_of(service)))
        return {item["metadata"]["name"]: sum(cores(c["usage"]["cpu"]) for c in item["containers"])
                for item in found.get("items", [])}

    def autoscaler(self, spec, desired_replicas):
        """The real HorizontalPodAutoscaler, built from overlays/lab06/hpa.yaml with ``spec``'s numbers."""
        from scalelab.runtimes.kubernetes.hpa import KubernetesAutoscaler
        return KubernetesAutoscaler(self, spec, desired_replicas)


class LogFollower:
    """A pod's log read in a thread from ``tail`` lines back to its end (the container exits)."""

    def __init__(self, core, namespace: str, pod: str, container: str, tail: int):
        import threading
        self._chunks: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(core, namespace, pod, container, tail),
                                        name=f"log-{pod}", daemon=True)
        self._thread.start()

    def _read(self, core, namespace, pod, container, tail) -> None:
        try:
            stream = core.read_namespaced_pod_log(pod, namespace, container=container, tail_lines=tail, follow=True,
                                                  _preload_content=False, _request_timeout=120)
            for chunk in stream.stream(4096):
                self._chunks.append(chunk.decode(errors="replace"))
        except Exception:            # the pod went before its log could be read: what was read stays
            pass

    def result(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        text = "".join(self._chunks)
        return "" if text.startswith("unable to retrieve container logs") else text


def _pods_of(service: str) -> str:
    """The label selector of a service's pods: the stack's own only (a copy the learner applies
    beside them, e.g. lab 06's ``users-yours``, carries the name but not the part-of label)."""
    return f"app.kubernetes.io/name={service},{PART_OF}"


def _deployment_done(deployment) -> bool:
    spec, status = deployment.spec, deployment.status
    wanted = spec.replicas if spec.replicas is not None else 1
    return ((status.observed_generation or 0) >= deployment.metadata.generation
            and (status.updated_replicas or 0) == wanted
            and (status.replicas or 0) == wanted
            and (status.available_replicas or 0) == wanted
            and (status.ready_replicas or 0) == wanted)


def _statefulset_done(statefulset) -> bool:
    spec, status = statefulset.spec, statefulset.status
    wanted = spec.replicas if spec.replicas is not None else 1
    return ((status.observed_generation or 0) >= statefulset.metadata.generation
            and (status.ready_replicas or 0) == wanted
            and (status.replicas or 0) == wanted
            and (status.updated_replicas or 0) == wanted
            and (status.current_revision == status.update_revision))


# Run by `python -c` in a container: the CPU seconds its cgroup has used.
CPU_SECONDS_SCRIPT = """
import os
for path, scale in (("/sys/fs/cgroup/cpu.stat", None), ("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1e9),
                    ("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", 1e9)):
    if os.path.exists(path):
        text = open(path).read()
        if scale is None:
            usage = dict(line.split() for line in text.splitlines())["usage_usec"]
            print(int(usage) / 1e6)
        else:
            print(int(text) / scale)
        break
else:
    raise SystemExit("no cgroup CPU counter in this container")
"""
