"""The real HorizontalPodAutoscaler on kind, behind the same ``Autoscaler`` seam as the model.

    autoscaler = stack.autoscale(HpaSpec(...), desired_replicas).start()
    ...                                   # load the entry URL; Kubernetes scales the Deployment
    autoscaler.stop()                     # deletes the HPA
    autoscaler.history()                  # t_s, replicas, cpu_utilization, desired_by_you, decided

Nothing here decides anything: the HPA controller (kube-controller-manager) scales. Every
``period_s`` this reads the HPA's own status — currentReplicas, desiredReplicas and the
CPU averageUtilization it observed (metrics-server's numbers, % of the pods' CPU request) —
and calls the learner's ``desired_replicas`` on those same numbers, so the notebook can put
the learner's answer next to Kubernetes' decision. The HPA object is
``stack/deploy/k8s/overlays/lab06/hpa.yaml`` with the spec's numbers filled in.
"""

import copy
import math
import threading
import time

import pandas as pd
import yaml

from scalelab.errors import ServiceFailed
from scalelab.runtimes.kubernetes.render import K8S

HPA_FILE = K8S / "overlays" / "lab06" / "hpa.yaml"
COLUMNS = ["t_s", "replicas", "cpu_utilization", "desired_by_you", "decided", "note"]   # as ModelAutoscaler
METRICS_TIMEOUT = 180.0


def hpa_manifest(spec, namespace: str) -> dict:
    """overlays/lab06/hpa.yaml with ``spec``'s service, bounds, target and scale-down window."""
    hpa = copy.deepcopy(yaml.safe_load(HPA_FILE.read_text()))
    hpa["metadata"]["name"] = spec.service
    hpa["metadata"]["namespace"] = namespace
    hpa["metadata"].setdefault("labels", {})["app.kubernetes.io/part-of"] = "scalelab"
    hpa["spec"]["scaleTargetRef"]["name"] = spec.service
    hpa["spec"]["minReplicas"] = spec.min_replicas
    hpa["spec"]["maxReplicas"] = spec.max_replicas
    cpu = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu")
    cpu["resource"]["target"]["averageUtilization"] = spec.target_cpu_utilization
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = spec.scale_down_stabilization_s
    return hpa


def call_learner(desired_replicas, current: int, utilization: float, spec):
    """The learner's function on the HPA's observed numbers, called as ModelAutoscaler calls it."""
    return desired_replicas(current, utilization, spec.target_cpu_utilization, spec.tolerance,
                            spec.min_replicas, spec.max_replicas)


class KubernetesAutoscaler:
    is_model = False     # Kubernetes' HPA decides; this only records

    def __init__(self, runtime, spec, desired_replicas):
        self.runtime, self.spec, self.desired_replicas = runtime, spec, desired_replicas
        self._rows: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self.errors: list[str] = []                   # the learner's function failed (as ModelAutoscaler.errors)
        self.last_error: Exception | None = None      # the last API error of the recorder (a row lost)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "KubernetesAutoscaler":
        self._t0 = time.monotonic()        # t_s counts from this call, as ModelAutoscaler's does
        self._require_cpu_request()
        self._wait_for_metrics()
        self.runtime.apply([hpa_manifest(self.spec, self.runtime.namespace)])
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kind-hpa-recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        from kubernetes.client.exceptions import ApiException
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.spec.period_s + 30)
            self._thread = None
        try:
            self._autoscaling().delete_namespaced_horizontal_pod_autoscaler(self.spec.service, self.runtime.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(list(self._rows), columns=COLUMNS)

    def __enter__(self) -> "KubernetesAutoscaler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what start() makes sure of ------------------------------------------------------------
    def _autoscaling(self):
        from kubernetes import client
        return client.AutoscalingV2Api(self.runtime.api.client)

    def _require_cpu_request(self) -> None:
        """The Deployment's CPU request is the spec's (100 % utilization = the request): set it
        (a rolling update) when it differs."""
        wanted = f"{self.spec.cpu_request_millicores}m"
        deployment = self.runtime.apps.read_namespaced_deployment(self.spec.service, self.runtime.namespace)
        container = next(c for c in deployment.spec.template.spec.containers if c.name == self.spec.service)
        have = (container.resources.requests or {}).get("cpu") if container.resources else None
        if have is None or abs(_millicores(have) - self.spec.cpu_request_millicores) > 0.5:
            patch = {"spec": {"template": {"spec": {"containers": [
                {"name": self.spec.service, "resources": {"requests": {"cpu": wanted}}}]}}}}
            self.runtime.apps.patch_namespaced_deployment(self.spec.service, self.runtime.namespace, patch)
            self.runtime.wait_ready([self.spec.service])

    def _wait_for_metrics(self, timeout: float = METRICS_TIMEOUT) -> None:
        """metrics-server reports every pod of the service (the HPA has nothing to act on before)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                pods = {p.metadata.name for p in self.runtime._pods(self.spec.service)}
                measured = set(self.runtime.pod_metrics(self.spec.service))
                if pods and pods <= measured:
                    return
                last = f"{len(pods & measured)} of {len(pods)} pods measured"
            except Exception as exc:     # the metrics API is registered but not served yet (503)
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', '') or exc}"[:160]
            self._stop.wait(1.0)          # metrics-server scrapes every 10 s: poll, bounded
        raise ServiceFailed(f"no CPU metrics for {self.spec.service} after {timeout:.0f}s ({last}) — is metrics-server "
                            "running? `kubectl -n kube-system logs deploy/metrics-server`")

    # -- recording --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                self.sample()
            except Exception as exc:     # a transient API error costs one row, not the recorder
                self.last_error = exc
            if self._stop.wait(self.spec.period_s):
                return

    def sample(self) -> dict:
        self.runtime.follow_members(self.spec.service)   # the HPA's new pods: named, and in nginx's upstream
        hpa = self._autoscaling().read_namespaced_horizontal_pod_autoscaler_status(self.spec.service,
                                                                                  self.runtime.namespace)
        status = hpa.status
        utilization = None
        for metric in status.current_metrics or []:
            if metric.type == "Resource" and metric.resource and metric.resource.name == "cpu":
                utilization = metric.resource.current.average_utilization
        current = status.current_replicas
        by_you = None
        if utilization is not None and current:
            try:
                by_you = call_learner(self.desired_replicas, current, float(utilization), self.spec)
            except NotImplementedError:
                self.errors.append("desired_replicas() is still the stub: fill in its exercise cell")
            except Exception as exc:     # learner code: keep recording, say what went wrong
                self.errors.append(f"{type(exc).__name__}: {exc}")
        # The HPA's own words when it held back (ScalingLimited: at min/max; AbleToScale false:
        # e.g. BackoffDownscale / the stabilization window; ScalingActive false: no metrics).
        notes = [f"{c.type}={c.status}: {c.reason}" for c in status.conditions or []
                 if (c.type == "ScalingLimited" and c.status == "True")
                 or (c.type in ("AbleToScale", "ScalingActive") and c.status == "False")
                 or (c.type == "AbleToScale" and c.reason == "ScaleDownStabilized")]
        row = {"t_s": round(time.monotonic() - self._t0, 2), "replicas": current,
               "cpu_utilization": float(utilization) if utilization is not None else math.nan,
               "desired_by_you": by_you, "decided": status.desired_replicas, "note": "; ".join(notes)}
        self._rows.append(row)
        return row


def _millicores(quantity: str) -> float:
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000
