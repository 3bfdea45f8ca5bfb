"""Port-forwards from 127.0.0.1 to single pods (``kubectl port-forward``), one per member.

An entry Service may answer on a NodePort (kind publishes them on 127.0.0.1); a single member
(``stack.member_url("users-2")``), Postgres and Redis are reached through the API server,
one forward per pod, started on first use and replaced when its pod is. A forward is a
debugging path (one stream through the API server), not a load-test path: load goes to
the entry URL. Every forward this process started ends with ``close()`` or at exit.
"""

import atexit
import socket
import subprocess
import threading
import time
from pathlib import Path

from scalelab.errors import ServiceFailed
from scalelab.ports import free_port
from scalelab.runtimes.kubernetes.tools import tool


class Forwards:
    def __init__(self, kubeconfig: Path, namespace: str, log: Path):
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self._open: dict[tuple[str, int], tuple[subprocess.Popen, int]] = {}
        self._lock = threading.Lock()
        atexit.register(self.close)

    def port(self, pod: str, remote: int, timeout: float = 20.0) -> int:
        """A local port forwarded to ``pod``'s ``remote`` port (re-used while its process lives)."""
        with self._lock:
            known = self._open.get((pod, remote))
            if known and known[0].poll() is None:
                return known[1]
            local = free_port()
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as out:
                proc = subprocess.Popen(
                    [tool("kubectl") or "kubectl", "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, "port-forward",
                     "--address", "127.0.0.1", f"pod/{pod}", f"{local}:{remote}"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self._open[(pod, remote)] = (proc, local)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:       # until the forward accepts connections (bounded)
            if proc.poll() is not None:
                tail = "\n".join(self.log.read_text().splitlines()[-5:])
                raise ServiceFailed(f"kubectl port-forward to {pod}:{remote} exited; {self.log} ends with:\n{tail}")
            try:
                with socket.create_connection(("127.0.0.1", local), timeout=0.5):
                    return local
            except OSError:
                time.sleep(0.05)
        raise ServiceFailed(f"kubectl port-forward to {pod}:{remote} not listening after {timeout:.0f}s; see {self.log}")

    def known(self, pod: str, remote: int) -> int | None:
        entry = self._open.get((pod, remote))
        return entry[1] if entry and entry[0].poll() is None else None

    def drop(self, pod: str) -> None:
        for key in [k for k in self._open if k[0] == pod]:
            self._stop(self._open.pop(key)[0])

    def close(self) -> None:
        with self._lock:
            for proc, _ in self._open.values():
                self._stop(proc)
            self._open.clear()

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
