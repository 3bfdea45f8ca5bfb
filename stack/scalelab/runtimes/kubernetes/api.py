"""The Kubernetes API as the runtime uses it, through the official Python client.

    api = Api(kubeconfig)                   # clients for one kubeconfig (and context)
    api.apply(objects)                      # server-side apply, in dependency order
    code, output = api.exec(ns, pod, container, ["nginx", "-t"])
    api.ready(pod)                          # its Ready condition

Errors from the API name the object and say what the API server said (never an object's
body: a Secret's would be printed).
"""

import json
import threading
import time
from pathlib import Path

from scalelab.errors import RuntimeUnavailable, ServiceFailed

FIELD_MANAGER = "scalelab"
APPLY_ORDER = ["Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
               "ConfigMap", "Secret", "PersistentVolumeClaim", "Service", "StatefulSet", "Deployment",
               "HorizontalPodAutoscaler"]


def kube():
    """The client's modules (imported on first use: the other runtimes never load them)."""
    try:
        from kubernetes import client, config, watch
        from kubernetes.dynamic import DynamicClient
    except ImportError:  # pragma: no cover - a project dependency
        raise RuntimeUnavailable("the kubernetes Python package is missing — run `make setup`") from None
    return client, config, watch, DynamicClient


def not_found(exc) -> bool:
    return getattr(exc, "status", None) == 404


def reason(exc) -> str:
    """What the API server said, in one line (its Status message when there is one)."""
    body = getattr(exc, "body", "") or ""
    body = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    try:
        detail = json.loads(body).get("message", "")
    except ValueError:
        detail = body[:300]
    return f"{getattr(exc, 'reason', None) or type(exc).__name__}: {detail}".strip(": ")


def ready(pod) -> bool:
    return bool(pod.metadata.deletion_timestamp is None
                and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []))


EXEC_ATTEMPTS = 3        # tries to open an exec stream (never to re-run a command that ran)
EXEC_NOT_RUN = 126



class Api:
    def __init__(self, kubeconfig: Path, context: str | None = None):
        client, config, _, DynamicClient = kube()
        self.client = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        self.core = client.CoreV1Api(self.client)
        self.apps = client.AppsV1Api(self.client)
        self.dynamic = DynamicClient(self.client)
        # exec has a client of its own: kubernetes.stream.stream() swaps its client's request
        # method for a websocket one while it opens the stream, and a call from another thread
        # (a port-forward watcher, a log follower) on the same client would go out as a websocket.
        self._exec_core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig),
                                                                          context=context))
        self._exec_lock = threading.Lock()

    def apply(self, objects: list[dict], dry_run: bool = False, field_manager: str = FIELD_MANAGER) -> None:
        """Server-side apply, in dependency order (namespace, RBAC, config, services, workloads).
        ``dry_run``: the API server validates, defaults and admits every object, and stores nothing."""
        extra = {"dry_run": "All"} if dry_run else {}
        rank = {kind: i for i, kind in enumerate(APPLY_ORDER)}
        for obj in sorted(objects, key=lambda o: rank.get(o["kind"], len(APPLY_ORDER))):
            resource = self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            namespace = obj["metadata"].get("namespace") if resource.namespaced else None
            try:
                resource.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=namespace,
                                           field_manager=field_manager, force_conflicts=True, **extra)
            except Exception as exc:   # an API error: name the object, never print its body (a Secret)
                raise ServiceFailed(f"applying {obj['kind']}/{obj['metadata']['name']} failed: {reason(exc)}") from exc

    def exec(self, namespace: str, pod: str, container: str, argv: list[str], timeout: float = 60) -> tuple[int, str]:
        """Run ``argv`` in a container (``kubectl exec``): (exit code, stdout + stderr); a command
        that could not start is EXEC_NOT_RUN (126, as a shell says) with the runtime's message."""
        from kubernetes.stream import stream
        for attempt in range(EXEC_ATTEMPTS):   # opening the stream can fail on a busy API server
            try:                               # (a TLS EOF): nothing ran yet, so open it again
                with self._exec_lock:
                    session = stream(self._exec_core.connect_get_namespaced_pod_exec, pod, namespace,
                                     container=container, command=argv, stderr=True, stdin=False, stdout=True,
                                     tty=False, _preload_content=False)
                break
            except Exception as exc:
                transient = "EOF" in str(exc) or "Connection reset" in str(exc) or "timed out" in str(exc)
                if not transient or attempt == EXEC_ATTEMPTS - 1:
                    raise ServiceFailed(f"exec in {pod}/{container} failed: {reason(exc)}") from exc
                time.sleep(0.5 * (attempt + 1))
        output = []
        deadline = time.monotonic() + timeout
        try:
            while session.is_open():
                if time.monotonic() > deadline:
                    raise ServiceFailed(f"`{' '.join(argv[:3])} ...` in {pod} took over {timeout:.0f}s")
                session.update(timeout=1)
                output += [session.read_stdout(), session.read_stderr()]
            code, problem = _exit_status(session.read_channel(3))   # 3: the exec's status channel
            output.append(problem)
        finally:
            session.close()
        return code, "".join(output)

    def wait(self, lister, done, timeout: float, what: str, **selectors) -> None:
        """Watch ``lister``'s objects (with ``selectors``) until ``done(objects)`` is true, re-listing
        at least every 10 s (a change between a list and a watch is never missed)."""
        _, _, watch, _ = kube()
        deadline = time.monotonic() + timeout
        while not done(lister(**selectors).items):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceFailed(f"{what} not reached after {timeout:.0f}s")
            stream = watch.Watch()
            for _ in stream.stream(lister, timeout_seconds=max(1, int(min(left, 10))), **selectors):
                if done(lister(**selectors).items):
                    stream.stop()
                    return


def cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("250m", "1", "123456n") in cores."""
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    if quantity and quantity[-1] in units:
        return float(quantity[:-1]) * units[quantity[-1]]
    return float(quantity)


def _exit_status(status: str) -> tuple[int, str]:
    """(exit code, problem) from an exec's status message: Success is 0; a command that exited
    non-zero names its code; one that never ran (e.g. no such executable in the image) is
    EXEC_NOT_RUN with the API's message (the client library would fail parsing it)."""
    import yaml
    found = yaml.safe_load(status) if status else None
    if not isinstance(found, dict) or found.get("status") == "Success":
        return 0, ""
    for cause in (found.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), ""
            except (TypeError, ValueError):
                break
    return EXEC_NOT_RUN, str(found.get("message") or status)

