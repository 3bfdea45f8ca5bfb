"""The ``kind`` runtime: the stack on a kind Kubernetes cluster (lab 06; any lab with an overlay).

    Stack(lab=6, runtime="kind").up()

``up()``: check the tools (kind, kubectl, a Docker engine, the node image: each missing one
named in one line), create or re-use the cluster from ``kind-config.yaml`` (name
``scalelab``), build the images (``compose_images``: content-addressed tags, the same images
as the compose runtime), ``kind load`` them, install metrics-server
(``stack/deploy/k8s/metrics-server``), render the lab's overlay through a kustomization
written in the state directory (``kind_render``), apply every object with server-side
apply through the Kubernetes Python client, and wait for the rollouts by watching the
workloads' status. The entry Service is NodePort 30080, published by kind-config.yaml on
127.0.0.1:30080: ``url("users")``. ``down()`` deletes the stack's namespace (and with it
every pod, volume and secret); the cluster is kept, unless ``SCALELAB_KIND_DELETE_CLUSTER=1``.

Members are named as on ``local``: ``postgres``, ``users-1``.., ``redis-1``, ``nginx-1``,
each mapped to a pod. A member keeps its number while its pod lives; a pod that replaces
one (after ``kill``, ``restart``) takes the lowest free number, so ``users-2`` killed comes
back as ``users-2`` on a new pod. Kubernetes differences, said plainly:
* ``kill(member)`` deletes the pod (KILL: no grace; TERM/INT: SIGTERM and its grace
  period); its controller replaces it at once — it does not stay down until ``start``;
* STOP/CONT (freezing a process) have no Kubernetes equivalent and are refused;
* on kind, nginx runs stack/deploy/k8s/components/nginx/nginx.conf — the reference upstream
  over the users pods (a headless Service, re-resolved), the ClusterIP Service as its retry —
  not the learner's upstream.conf (lab 02's exercise);
* the learner's workspace reaches the users pods as the ``workspace`` ConfigMap, synced when
  a member is killed or restarted and at ``up()``/``reload()``: as on local, a running member
  keeps the code it loaded, a restarted one runs the files as they are now.
"""

import datetime
import hashlib
import json
import os
import time
from pathlib import Path

import pandas as pd

from scalelab.errors import RuntimeUnavailable, ScalelabError, ServiceFailed
from scalelab.plans import Plan, plan_for
from scalelab.runtimes import compose_env, compose_images, kind_cluster, kind_render
from scalelab.runtimes.kind_forward import Forwards

FIELD_MANAGER = "scalelab"
PORTS = {"postgres": 5432, "users": 8000, "redis": 6379, "nginx": 8080}
FRONTS = {"nginx": "users"}            # while nginx runs, url("users") is the entry (nginx)
STATEFUL = {"postgres"}                # StatefulSets; the other services are Deployments
READY_TIMEOUT = float(os.environ.get("SCALELAB_KIND_READY_TIMEOUT", "300"))
APPLY_ORDER = ["Namespace", "ServiceAccount", "ConfigMap", "Secret", "PersistentVolumeClaim", "Service",
               "StatefulSet", "Deployment", "HorizontalPodAutoscaler"]
SIGNALS = ("KILL", "TERM", "INT")
PART_OF = "app.kubernetes.io/part-of=scalelab"


def _kube():
    try:
        import kubernetes  # noqa: F401
    except ImportError:  # pragma: no cover - a project dependency
        raise RuntimeUnavailable("the kubernetes Python package is missing — run `make setup`") from None
    from kubernetes import client, config, watch
    from kubernetes.dynamic import DynamicClient
    return client, config, watch, DynamicClient


class KindRuntime:
    name = "kind"

    def __init__(self, state_dir):
        kind_cluster.require_tools()             # kind, kubectl: one line each when missing
        from scalelab.runtimes.compose_engine import connect
        self.docker = connect()                  # the engine kind runs on (and builds the images)
        self.home = Path(state_dir).resolve() / "kind"
        self.home.mkdir(parents=True, exist_ok=True)
        self.namespace = "scalelab-" + hashlib.sha1(str(self.home).encode()).hexdigest()[:8]
        self.cluster = kind_cluster.Cluster(self.home)
        self._state_file = self.home / "state.json"
        self.lab: int | None = None
        self.tag: str | None = None
        self.workspace: Path | None = None
        self._numbers: dict[str, dict[str, int]] = {}
        self._api = None
        self._load()
        if not self.cluster.exists():
            kind_cluster.node_image(self.docker)  # no node image: say so now, not halfway through up()
        self.forwards = Forwards(self.cluster.kubeconfig, self.namespace, self.home / "port-forward.log")

    # -- persisted state ----------------------------------------------------------------
    def _load(self) -> None:
        if self._state_file.exists():
            data = json.loads(self._state_file.read_text())
            self.lab, self.tag = data.get("lab"), data.get("tag")
            self.workspace = Path(data["workspace"]) if data.get("workspace") else None
            self._numbers = data.get("members", {})

    def _save(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"lab": self.lab, "tag": self.tag, "namespace": self.namespace,
                                   "workspace": str(self.workspace) if self.workspace else None,
                                   "members": self._numbers}))
        tmp.replace(self._state_file)

    # -- Kubernetes API -------------------------------------------------------------------
    @property
    def api(self):
        """(ApiClient, CoreV1Api, AppsV1Api, DynamicClient) for the cluster's kubeconfig."""
        if self._api is None:
            if not self.cluster.kubeconfig.exists():
                if not self.cluster.exists():
                    raise ScalelabError("no kind cluster yet — is the stack up? (`stack.up()`)")
                self.cluster.write_kubeconfig()
            client, config, _, DynamicClient = _kube()
            api_client = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
            self._api = (api_client, client.CoreV1Api(api_client), client.AppsV1Api(api_client),
                         DynamicClient(api_client))
        return self._api

    @property
    def core(self):
        return self.api[1]

    @property
    def apps(self):
        return self.api[2]

    def _not_found(self, exc) -> bool:
        return getattr(exc, "status", None) == 404

    def _namespace_exists(self) -> bool:
        from kubernetes.client.exceptions import ApiException
        try:
            namespace = self.core.read_namespace(self.namespace)
        except ApiException as exc:
            if self._not_found(exc):
                return False
            raise
        return namespace.status.phase != "Terminating"

    def apply(self, objects: list[dict], dry_run: bool = False, field_manager: str = FIELD_MANAGER) -> None:
        """Server-side apply, in dependency order (namespace, config, services, workloads).
        ``dry_run``: the API server validates, defaults and admits every object, and stores nothing."""
        dynamic = self.api[3]
        extra = {"dry_run": "All"} if dry_run else {}
        rank = {kind: i for i, kind in enumerate(APPLY_ORDER)}
        for obj in sorted(objects, key=lambda o: rank.get(o["kind"], len(APPLY_ORDER))):
            resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            namespace = obj["metadata"].get("namespace") if resource.namespaced else None
            try:
                resource.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=namespace,
                                           field_manager=field_manager, force_conflicts=True, **extra)
            except Exception as exc:   # an API error: name the object, never print its body (a Secret)
                reason = getattr(exc, "reason", None) or type(exc).__name__
                body = getattr(exc, "body", "") or ""
                body = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
                try:
                    detail = json.loads(body).get("message", "")
                except ValueError:
                    detail = body[:300]
                raise ServiceFailed(f"applying {obj['kind']}/{obj['metadata']['name']} failed: {reason}: "
                                    f"{detail}") from None

    # -- the protocol -----------------------------------------------------------------------
    def running_lab(self) -> int | None:
        if self.lab is None or not self.cluster.exists():
            return None
        return self.lab if self._namespace_exists() else None

    def up(self, plan: Plan, workspace: Path) -> bool:
        if self.running_lab() not in (None, plan.lab):
            self.down()
        kind_render.overlay(plan.lab)                  # a lab without an overlay: one line, before any work
        started = self.cluster.ensure(self.docker)
        self._api = None                               # a (re)created cluster has a new kubeconfig
        self.lab, self.workspace = plan.lab, Path(workspace).resolve()
        self.tag = compose_images.ensure(self.docker, self.home / "build.log")
        self._save()
        self.cluster.load([compose_images.reference(image, self.tag) for image in compose_images.IMAGES],
                          self.home / "load.log")
        self._ensure_metrics_server()
        self._check_entry_port_free()
        if not self._namespace_exists():
            self._wait_namespace_gone()                # a namespace still terminating (a recent down()) first
            started = True
        objects = self._render(plan)
        before = self._generations()
        self.apply([o for o in objects if o["kind"] != "HorizontalPodAutoscaler"])   # the HPA: autoscaler()
        self._prune(objects)
        started |= before != self._generations()
        self.wait_ready()
        self._wait_entry_spreads()
        self._save()
        return started

    def _wait_entry_spreads(self, timeout: float = 30) -> None:
        """Until nginx sends requests to every ready users pod. nginx learns the pods from the
        headless Service's DNS name, re-read every 2 s: right after a rollout or a scale it may
        still know fewer. (Without nginx the entry is the Service itself: nothing to wait for.)"""
        import httpx
        if not plan_for(self.lab).has("nginx") or not plan_for(self.lab).has("users"):
            return
        pods = {p.metadata.name for p in self._pods("users")
                if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])}
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
            while not pods <= seen:
                if time.monotonic() > deadline:
                    raise ServiceFailed(f"nginx still answers from {sorted(seen)} only, {timeout:.0f} s after "
                                        f"{sorted(pods)} were ready:\n{self.logs('nginx-1', tail=10)}")
                try:
                    seen.add(client.get(f"{self.url('users')}/health").headers.get("x-instance", ""))
                except httpx.HTTPError:
                    time.sleep(0.2)

    def _render(self, plan: Plan) -> list[dict]:
        directory = kind_render.write_kustomization(self.home, plan, self.namespace, self.tag or "dev",
                                                    self.workspace)
        return kind_render.render(directory)

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
        self.cluster.load_metrics_server(self.docker, self.home / "load.log")
        self.apply(kind_render.render_repo(kind_cluster.K8S / "metrics-server"))
        deadline = time.monotonic() + 120
        while not self._metrics_api_available():
            if time.monotonic() > deadline:
                raise ServiceFailed("metrics-server not available after 120 s (the HPA and namespace deletion need it):\n"
                                    + self._why_not_ready("metrics-server", namespace="kube-system",
                                                          selector="k8s-app=metrics-server"))
            time.sleep(1)

    def _metrics_api_available(self) -> bool:
        from kubernetes import client
        service = client.ApiregistrationV1Api(self.api[0]).read_api_service("v1beta1.metrics.k8s.io")
        return any(c.type == "Available" and c.status == "True" for c in service.status.conditions or [])

    def _check_entry_port_free(self) -> None:
        """The entry NodePort is cluster-wide: another stack's namespace holding it is named."""
        node_port = kind_cluster.entry_node_port()
        for service in self.core.list_service_for_all_namespaces(label_selector=PART_OF).items:
            if service.metadata.namespace == self.namespace:
                continue
            if any(port.node_port == node_port for port in service.spec.ports or []):
                raise ScalelabError(f"NodePort {node_port} is held by another stack's namespace "
                                    f"{service.metadata.namespace} — bring that stack down (stack.down()) or "
                                    f"`kubectl delete namespace {service.metadata.namespace}`")

    def down(self) -> None:
        """Delete the stack's namespace (every pod, volume, secret in it) and wait until it is gone.
        Safe to call twice. ``SCALELAB_KIND_DELETE_CLUSTER=1`` also deletes the cluster."""
        from kubernetes.client.exceptions import ApiException
        self.forwards.close()
        if self.cluster.exists():
            try:
                self.core.delete_namespace(self.namespace, propagation_policy="Foreground")
            except ApiException as exc:
                if not self._not_found(exc):
                    raise
            self._wait_namespace_gone()
            if os.environ.get("SCALELAB_KIND_DELETE_CLUSTER") == "1":
                self.cluster.delete()
        self.lab = None
        self._numbers = {}
        self._save()

    def _wait_namespace_gone(self, timeout: float = 180) -> None:
        _, _, watch, _ = _kube()
        from kubernetes.client.exceptions import ApiException
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.core.read_namespace(self.namespace)
            except ApiException as exc:
                if self._not_found(exc):
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
        for path in (self.home / "kustomize", self.home / "secrets.json", self.home / "state.json"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def url(self, service: str) -> str:
        plan = plan_for(self.lab) if self.lab else None
        entry = "nginx" if plan and plan.has("nginx") else "users"
        if service == entry or FRONTS.get(entry) == service:
            if not self.running_lab():
                raise ScalelabError(f"no {service} in this stack — is it up? (`stack.up()`)")
            return f"http://127.0.0.1:{kind_cluster.entry_port()}"
        members = self.members(service)
        if not members:
            raise ScalelabError(f"no {service} in this stack — is it up? (`stack.up()`)")
        return self.member_url(members[0])

    def member_url(self, member: str) -> str:
        return f"http://127.0.0.1:{self.forwards.port(self.pod(member), PORTS[self._service(member)])}"

    def database_url(self, role: str = "app", member: str | None = None) -> str:
        if member not in (None, "postgres"):
            raise ScalelabError(f"no {member} on the kind runtime: Postgres has one primary (member 'postgres')")
        pw = compose_env.passwords(self.home)
        port = self.forwards.port(self.pod("postgres"), PORTS["postgres"])
        if role == "app":
            return f"postgresql://shop:{pw['shop']}@127.0.0.1:{port}/shop"
        return f"postgresql://postgres:{pw['postgres']}@127.0.0.1:{port}/postgres"

    def redis_url(self) -> str:
        port = self.forwards.port(self.pod("redis-1"), PORTS["redis"])
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
        live = [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase not in ("Succeeded", "Failed")]
        return sorted(live, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))

    def _members_of(self, service: str) -> dict[str, str]:
        """member name -> pod name; numbers kept while pods live, new pods take the lowest free ones."""
        pods = [p.metadata.name for p in self._pods(service)]
        if service == "postgres":
            return {"postgres": pods[0]} if pods else {}
        numbers = {pod: n for pod, n in self._numbers.get(service, {}).items() if pod in pods}
        for pod in pods:
            if pod not in numbers:
                taken = set(numbers.values())
                numbers[pod] = next(n for n in range(1, len(pods) + 2) if n not in taken)
        if numbers != self._numbers.get(service):
            self._numbers[service] = numbers
            self._save()
        return {f"{service}-{n}": pod for pod, n in sorted(numbers.items(), key=lambda item: item[1])}

    def members(self, service: str) -> list[str]:
        return list(self._members_of(service))

    def pod(self, member: str) -> str:
        """The pod a member runs as now."""
        found = self._members_of(self._service(member))
        if member not in found:
            known = ", ".join(found) or "none (is the stack up?)"
            raise ScalelabError(f"no member {member!r} in this stack; members of {self._service(member)}: {known}")
        return found[member]

    # -- changing the running stack -----------------------------------------------------------
    def scale(self, service: str, replicas: int) -> None:
        if service in STATEFUL:
            raise ScalelabError("postgres is not scaled with scale(): it has one primary")
        if replicas < 0:
            raise ScalelabError(f"replicas must be >= 0, got {replicas}")
        self.apps.patch_namespaced_deployment_scale(service, self.namespace, {"spec": {"replicas": replicas}})
        self.wait_ready([service])
        if service == "users":
            self._wait_entry_spreads()

    def kill(self, member: str, signal: str = "KILL") -> None:
        if signal not in SIGNALS:
            raise ScalelabError(f"signal {signal!r} has no Kubernetes equivalent on runtime kind: use one of "
                                f"{', '.join(SIGNALS)} (the pod is deleted and replaced by its controller)")
        pod = self.pod(member)
        self._sync_workspace()                      # its replacement mounts the learner's files as they are now
        self.forwards.drop(pod)
        grace = 0 if signal == "KILL" else None    # None: the pod's terminationGracePeriodSeconds
        self.core.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=grace)

    def _sync_workspace(self) -> None:
        """The ``workspace`` ConfigMap = the lab workspace's files now (created, updated or deleted)."""
        from kubernetes.client.exceptions import ApiException
        if self.lab is None or plan_for(self.lab).exercises == ():
            return
        found = [o for o in self._render(plan_for(self.lab))
                 if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "workspace"]
        if found:
            self.apply(found)
            return
        try:
            self.core.delete_namespaced_config_map("workspace", self.namespace)
        except ApiException as exc:
            if not self._not_found(exc):
                raise

    def start(self, member: str) -> None:
        """Wait until the member's controller has it (or its replacement) running and ready."""
        service = self._service(member)
        self._wait_member_ready(member)
        self.wait_ready([service])

    def _wait_member_ready(self, member: str, timeout: float = READY_TIMEOUT) -> None:
        """Watch the service's pods until ``member`` is a pod whose Ready condition is True (the
        Deployment's status may lag a pod deletion: this does not trust it)."""
        _, _, watch, _ = _kube()
        service = self._service(member)
        selector = _pods_of(service)

        def ready() -> bool:
            pods = {p.metadata.name: p for p in self._pods(service)}
            pod = pods.get(self._members_of(service).get(member, ""))
            return bool(pod and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []))

        deadline = time.monotonic() + timeout
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceFailed(f"{member} not ready after {timeout:.0f}s:\n{self._why_not_ready(service)}")
            stream = watch.Watch()
            for _ in stream.stream(self.core.list_namespaced_pod, self.namespace, label_selector=selector,
                                   timeout_seconds=max(1, int(min(left, 10)))):
                if ready():
                    stream.stop()
                    return

    def restart(self, member: str) -> None:
        """Graceful: delete the pod (it leaves the endpoints, preStop, then SIGTERM within its grace
        period); wait until its replacement is ready."""
        self.kill(member, "TERM")
        self.start(member)

    def reload(self, service: str) -> None:
        """Re-apply the lab's manifests (a changed workspace file becomes a new ConfigMap: a rolling
        update) and roll the service's pods (``kubectl rollout restart``), waiting for the rollout."""
        if self.lab is None:
            raise ScalelabError("the stack is not up — `stack.up()` first")
        objects = [o for o in self._render(plan_for(self.lab)) if o["kind"] != "HorizontalPodAutoscaler"]
        for obj in objects:       # keep the replica counts scale() or an HPA set since up()
            if obj["kind"] == "Deployment":
                obj["spec"].pop("replicas", None)
        self.apply(objects)
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        if service in STATEFUL:
            self.apps.patch_namespaced_stateful_set(service, self.namespace, patch)
        else:
            self.apps.patch_namespaced_deployment(service, self.namespace, patch)
        self.wait_ready([service])

    def logs(self, member: str, tail: int = 40) -> str:
        return self.core.read_namespaced_pod_log(self.pod(member), self.namespace, container=self._service(member),
                                                 tail_lines=tail).rstrip("\n")

    def status(self) -> pd.DataFrame:
        rows = []
        plan = plan_for(self.lab) if self.lab else None
        for service in (plan.replicas if plan else ()):
            pods = {p.metadata.name: p for p in self._pods(service)}
            for member, pod in self._members_of(service).items():
                status = pods[pod].status if pod in pods else None
                ready = bool(status and status.container_statuses and all(c.ready for c in status.container_statuses))
                rows.append({"member": member, "pid": None,
                             "port": self.forwards.known(pod, PORTS[service]),
                             "state": "running" if ready else (status.phase.lower() if status else "gone"),
                             "log": f"kubectl -n {self.namespace} logs {pod}",
                             "started": pd.Timestamp(status.start_time) if status and status.start_time else None})
        return pd.DataFrame(rows, columns=["member", "pid", "port", "state", "log", "started"])

    # -- readiness ----------------------------------------------------------------------------
    def wait_ready(self, services: list[str] | None = None, timeout: float = READY_TIMEOUT) -> None:
        """Watch each workload until its rollout is complete (kubectl rollout status's rule)."""
        _, _, watch, _ = _kube()
        plan = plan_for(self.lab)
        deadline = time.monotonic() + timeout
        for service in services or list(plan.replicas):
            stateful = service in STATEFUL
            lister = self.apps.list_namespaced_stateful_set if stateful else self.apps.list_namespaced_deployment
            done = _statefulset_done if stateful else _deployment_done
            items = lister(self.namespace, field_selector=f"metadata.name={service}").items
            if not items:
                raise ServiceFailed(f"no {service} workload in namespace {self.namespace}")
            if done(items[0]):
                continue
            stream = watch.Watch()
            left = max(1, int(deadline - time.monotonic()))
            for event in stream.stream(lister, self.namespace, field_selector=f"metadata.name={service}",
                                       timeout_seconds=left):
                if done(event["object"]):
                    stream.stop()
                    break
            else:
                raise ServiceFailed(f"{service} not rolled out after {timeout:.0f}s:\n{self._why_not_ready(service)}")

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
    def pod_metrics(self, service: str) -> dict[str, float]:
        """CPU (cores) per pod of ``service`` from the metrics API (what `kubectl top pods` shows)."""
        from kubernetes import client
        custom = client.CustomObjectsApi(self.api[0])
        found = custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", self.namespace, "pods",
                                                     label_selector=_pods_of(service))
        return {item["metadata"]["name"]: sum(_cores(c["usage"]["cpu"]) for c in item["containers"])
                for item in found.get("items", [])}

    def autoscaler(self, spec, desired_replicas):
        """The real HorizontalPodAutoscaler, built from overlays/lab06/hpa.yaml with ``spec``'s numbers."""
        from scalelab.runtimes.kind_hpa import KindAutoscaler
        return KindAutoscaler(self, spec, desired_replicas)


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
            and (status.updated_replicas or 0) == wanted
            and (status.current_revision == status.update_revision))


def _cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("250m", "1", "123456n") in cores."""
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    if quantity and quantity[-1] in units:
        return float(quantity[:-1]) * units[quantity[-1]]
    return float(quantity)

