"""Port-forwards from 127.0.0.1 to single members (``kubectl port-forward``), one per member.

An entry Service may answer on a NodePort (kind publishes them on 127.0.0.1); a single member
(``stack.member_url("users-2")``), Postgres and Redis are reached through the API server, one
forward per member and port, started on first use. A member keeps its local port for the
stack's life, as a process keeps its port on local: when its pod is replaced (a restart, a
kill and a start) the forward is started again on the same port, for the member's new pod —
a URL or DSN taken earlier keeps working. A forward is a debugging path (one stream through
the API server), not a load-test path: load goes to the entry URL. Every forward this
process started ends with ``close()`` or at exit.
"""

import atexit
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from scalelab.errors import ScalelabError, ServiceFailed
from scalelab.ports import free_port
from scalelab.runtimes.kubernetes.tools import tool
from scalelab.waiting import wait_until


class _Forward:
    """One local port kept forwarded to whichever pod is the member now (a thread re-starts
    ``kubectl port-forward`` whenever it exits). ``pod_of`` names the member's pod as (name, uid):
    a StatefulSet's replacement pod has the old name (``postgres-0``), only its uid tells them apart."""

    def __init__(self, forwards: "Forwards", member: str, remote: int, pod_of: Callable[[], tuple[str, str]],
                 local: int | None = None):
        self.forwards, self.member, self.remote, self.pod_of = forwards, member, remote, pod_of
        self.local = local or free_port()
        self.proc: subprocess.Popen | None = None
        self.pod: tuple[str, str] | None = None
        self.problem = "not started yet"
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._keep, name=f"forward-{member}-{remote}", daemon=True)
        self.thread.start()

    def _keep(self) -> None:
        while not self.closed.is_set():
            if self.proc is None or self.proc.poll() is not None:
                try:
                    self.pod = self.pod_of()
                    self.proc = self.forwards._start(self.pod[0], self.local, self.remote)
                except ScalelabError as exc:        # the member is down: try again (it may be started)
                    self.problem = str(exc)
                    self.proc = None
                    self.closed.wait(0.5)
                    continue
            self.closed.wait(0.5)                   # watching the kubectl process ...
            try:                                    # ... and the member's pod: replaced -> forward anew
                if self.pod_of() != self.pod and self.proc.poll() is None:
                    self.proc.terminate()
                    self.proc.wait(timeout=5)
            except Exception:                       # down for now, API busy, kubectl slow to end: the
                pass                                # watcher thread must live on; next turn decides

    def wait_listening(self, timeout: float) -> int:
        def accepts() -> bool:
            with socket.create_connection(("127.0.0.1", self.local), timeout=0.5):
                return True
        wait_until(accepts, timeout, interval=0.05, transient=OSError,   # polling the forward until it accepts
                   error=ServiceFailed,
                   on_timeout=lambda _: f"no port-forward to {self.member}:{self.remote} listening after "
                                        f"{timeout:.0f}s ({self.problem}); see {self.forwards.log}")
        return self.local

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class Forwards:
    def __init__(self, kubeconfig: Path, namespace: str, log: Path, context: str | None = None):
        self.kubeconfig, self.namespace, self.log, self.context = kubeconfig, namespace, log, context
        self._open: dict[tuple[str, int], _Forward] = {}
        self._lock = threading.Lock()
        atexit.register(self.close)

    def _start(self, pod: str, local: int, remote: int) -> subprocess.Popen:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        context = ["--context", self.context] if self.context else []
        with open(self.log, "a") as out:
            return subprocess.Popen(
                [tool("kubectl") or "kubectl", "--kubeconfig", str(self.kubeconfig), *context, "-n", self.namespace,
                 "port-forward", "--address", "127.0.0.1", f"pod/{pod}", f"{local}:{remote}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def port(self, member: str, remote: int, pod_of: Callable[[], tuple[str, str]], timeout: float = 30.0,
             local: int | None = None) -> int:
        """The local port forwarded to ``member``'s ``remote`` port (kept while the stack runs);
        ``local``: that port, where a server advertises it (Kafka), else a free one."""
        with self._lock:
            forward = self._open.get((member, remote))
            if forward is None:
                forward = self._open[(member, remote)] = _Forward(self, member, remote, pod_of, local)
        return forward.wait_listening(timeout)

    def known(self, member: str, remote: int) -> int | None:
        forward = self._open.get((member, remote))
        return forward.local if forward else None

    def drop(self, member: str) -> None:
        """Stop forwarding to ``member`` (it left the stack: scaled in)."""
        with self._lock:
            for key in [k for k in self._open if k[0] == member]:
                self._open.pop(key).close()

    def close(self) -> None:
        with self._lock:
            for forward in self._open.values():
                forward.close()
            self._open.clear()
