"""Member names for pods: ``users-1``, ``users-2`` .. as on every runtime.

A Deployment's pods get generated names (``users-6648f5979-z84v4``). ``Names`` numbers them
in the order they appear and keeps the numbers while the pods live: a pod that replaces a
member (``start``, ``restart``) takes that member's number; any other new pod the lowest
free one. A killed member keeps its number, down, until it is started again.

The shop's pods are told their name (``tell``): the driver writes it into the pod's
``/run/scalelab/instance`` and labels the pod ``scalelab.io/member``; the shop's entrypoint
waits for the file (``SHOP_INSTANCE_FILE``) before it starts the server or worker, so the
replica says ``X-Instance: users-2`` and a Celery worker is ``worker-2@scalelab``, as on local.
Prometheus (lab 07) reads the label.
"""

INSTANCE_FILE = "/run/scalelab/instance"     # an emptyDir in every shop pod (stack/deploy/k8s)
MEMBER_LABEL = "scalelab.io/member"
SHOP_SERVICES = ("users", "orders", "worker", "relay", "projector", "express", "green")
QUEUE_SERVICES = ("worker", "relay", "projector")       # ready when announced in Redis


def member_name(service: str, number: int) -> str:
    return "postgres" if service == "postgres" else f"{service}-{number}"


class Names:
    def __init__(self, numbers=None, down=None, pending=None, told=None, routed=None):
        self.numbers: dict[str, dict[str, int]] = numbers or {}     # service -> {pod: number}
        self.down_: dict[str, list[int]] = down or {}               # service -> numbers killed, not started
        self.pending: dict[str, list[int]] = pending or {}          # service -> numbers the next new pods take
        self.told: dict[str, str] = told or {}                      # pod -> the member name it was told
        self.routed: dict[str, list[str]] = routed or {}            # service -> members nginx's upstream has

    @classmethod
    def from_json(cls, data: dict) -> "Names":
        return cls(data.get("numbers"), data.get("down"), data.get("pending"), data.get("told"), data.get("routed"))

    def to_json(self) -> dict:
        return {"numbers": self.numbers, "down": self.down_, "pending": self.pending, "told": self.told,
                "routed": self.routed}

    def number(self, service: str, pods: list[str]) -> bool:
        """Number ``pods`` (oldest first); forget pods gone. True when anything changed."""
        before = (dict(self.numbers.get(service, {})), list(self.pending.get(service, [])))
        numbers = {pod: n for pod, n in self.numbers.get(service, {}).items() if pod in pods}
        pending = self.pending.setdefault(service, [])
        down = set(self.down_.get(service, []))
        for pod in pods:
            if pod in numbers:
                continue
            if pending:
                n = pending.pop(0)
                numbers = {other: m for other, m in numbers.items() if m != n}   # the pod it replaces
            else:
                taken = set(numbers.values()) | down
                n = next(m for m in range(1, len(numbers) + len(down) + 2) if m not in taken)
            numbers[pod] = n
            self.told.pop(pod, None)         # a pod with a stable name (a StatefulSet's) is told again
        self.numbers[service] = numbers
        self.told = {pod: member for pod, member in self.told.items()
                     if pod in numbers or not pod.startswith(f"{service}-")}
        return (numbers, pending) != before

    def members(self, service: str) -> dict[str, str | None]:
        """member -> pod (None while down), by number."""
        found: dict[int, str | None] = {n: pod for pod, n in self.numbers.get(service, {}).items()}
        found.update({n: None for n in self.down_.get(service, []) if n not in found})
        return {member_name(service, n): found[n] for n in sorted(found)}

    def member_of(self, service: str, pod: str) -> str | None:
        n = self.numbers.get(service, {}).get(pod)
        return member_name(service, n) if n is not None else None

    def _n(self, member: str) -> int:
        return 1 if member == "postgres" else int(member.rsplit("-", 1)[1])

    def down(self, service: str, member: str) -> None:
        n = self._n(member)
        self.numbers[service] = {pod: m for pod, m in self.numbers.get(service, {}).items() if m != n}
        if n not in self.down_.setdefault(service, []):
            self.down_[service].append(n)

    def starting(self, service: str, member: str) -> None:
        """The next new pod of ``service`` is ``member`` (a start, or a restart's replacement)."""
        n = self._n(member)
        self.down_[service] = [m for m in self.down_.get(service, []) if m != n]
        if n not in self.pending.setdefault(service, []):
            self.pending[service].append(n)

    def forget_down(self, service: str) -> None:
        self.down_.pop(service, None)
        self.pending.pop(service, None)


def can_tell(pod) -> bool:
    """The pod's main container runs (the shop's entrypoint waits in it for its name)."""
    service = (pod.metadata.labels or {}).get("app.kubernetes.io/name")
    return any(c.name == service and c.state and c.state.running for c in pod.status.container_statuses or [])


def tell(rt, pod, member: str) -> None:
    """Label the pod with its member name; a shop pod also gets it in its instance file."""
    rt.core.patch_namespaced_pod(pod.metadata.name, rt.namespace, {"metadata": {"labels": {MEMBER_LABEL: member}}})
    service = pod.metadata.labels.get("app.kubernetes.io/name")
    if service in QUEUE_SERVICES:      # an announcement left by an earlier pod of the name is not this one's
        from scalelab.runtimes.compose import queue as compose_queue
        compose_queue.forget(rt, member)
    if service in SHOP_SERVICES:
        code, output = rt.api.exec(rt.namespace, pod.metadata.name, service,
                                   ["python3", "-c",
                                    "import os, sys; open(sys.argv[1] + '.tmp', 'w').write(sys.argv[2]); "
                                    "os.replace(sys.argv[1] + '.tmp', sys.argv[1])", INSTANCE_FILE, member])
        if code != 0:
            from scalelab.errors import ServiceFailed
            raise ServiceFailed(f"telling {pod.metadata.name} its member name {member} failed: {output.strip()[-300:]}")
