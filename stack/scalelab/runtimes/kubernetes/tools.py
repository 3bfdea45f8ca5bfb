"""kubectl: where to find it, and what the runtime uses it for (kustomize, port-forward).

``make kind-offline`` builds a kubectl of the cluster's version into its cache; that one is
preferred, then PATH's.
"""

import os
import shutil
import subprocess
from pathlib import Path

from scalelab.errors import RuntimeUnavailable, ServiceFailed


def kind_cache() -> Path:
    """Where `make kind-offline` keeps what it builds (kind and kubectl among its binaries)."""
    return Path(os.environ.get("SCALELAB_KIND_CACHE", Path.home() / ".cache" / "scalelab" / "kind-offline"))

NO_KUBECTL = ("kubectl not found — install kubectl >= 1.33 (https://kubernetes.io/docs/tasks/tools/; "
              "it renders the manifests with its built-in kustomize) or `make kind-offline`, or use runtime=\"local\"")


def tool(name: str) -> str | None:
    """The ``kind`` or ``kubectl`` to run: the one ``make kind-offline`` built, else PATH's."""
    built = kind_cache() / "bin" / name
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    return shutil.which(name)


def run(argv: list[str], timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run kind, kubectl or docker, bounded; a failure names the command and its last lines."""
    if argv[0] in ("kind", "kubectl"):
        argv = [tool(argv[0]) or argv[0], *argv[1:]]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise ServiceFailed(f"`{' '.join(argv[:4])} ...` took over {timeout:.0f}s") from exc
    if check and out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-12:])
        raise ServiceFailed(f"`{' '.join(argv[:4])} ...` failed (exit {out.returncode}):\n{tail}")
    return out


def kustomize(directory: Path) -> str:
    """``kubectl kustomize DIR``: the rendered manifests (never printed: they hold the Secret)."""
    if tool("kubectl") is None:
        raise RuntimeUnavailable(NO_KUBECTL)
    out = run(["kubectl", "kustomize", str(directory)], timeout=120, check=False)
    if out.returncode != 0:
        raise ServiceFailed(f"kubectl kustomize {directory} failed: {out.stderr.strip()[-600:]}")
    return out.stdout
