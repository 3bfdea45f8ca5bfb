"""A local image registry beside the kind cluster, as kind's documentation sets one up: what the
``kubernetes`` runtime pushes to when ``SCALELAB_REGISTRY`` names it, and the nodes pull from.

    python -m scalelab.runtimes.kind.registry     # make kind-registry: prints SCALELAB_REGISTRY=localhost:5001

* the image ``scalelab/registry:<tag>`` from ``stack/deploy/registry`` (Debian's
  ``docker-registry`` package on the stack's base image: built here, nothing pulled);
* a container ``scalelab-registry`` on Docker's ``kind`` network, its port 5000 published on
  127.0.0.1:5001 (Docker pushes to ``localhost:5001`` over plain HTTP: a loopback registry);
* in every node of the cluster, ``/etc/containerd/certs.d/localhost:5001/hosts.toml`` sending
  pulls of ``localhost:5001/...`` to ``http://scalelab-registry:5000``; kind-config.yaml's
  ``containerdConfigPatches`` has containerd read that folder.

With it the kind cluster is "a cluster with a registry", like a cloud cluster with its
registry: the ``kubernetes`` runtime's images reach the nodes by a real pull, no ``kind load``.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import httpx

from scalelab.errors import RuntimeUnavailable, ServiceFailed
from scalelab.runtimes.common import images as compose_images
from scalelab.runtimes.common.images import DEPLOY, Image
from scalelab.runtimes.kind.cluster import REGISTRY_CONTAINER, cluster_name
from scalelab.waiting import wait_until

CONTAINER = REGISTRY_CONTAINER
HOST_PORT = 5001
ADDRESS = f"localhost:{HOST_PORT}"          # what SCALELAB_REGISTRY names, on the host and in the nodes
NETWORK = "kind"                            # the Docker network kind puts its nodes on
CERTS_D = "/etc/containerd/certs.d"
IMAGE = Image("registry", DEPLOY / "registry", DEPLOY / "registry" / "Dockerfile",
              compose_images._files(DEPLOY / "registry"))
HOSTS_TOML = f'[host."http://{CONTAINER}:5000"]\n  capabilities = ["pull", "resolve"]\n'


def reference() -> str:
    digest = hashlib.sha256(compose_images.BASE_IMAGE.encode())
    for path in IMAGE.inputs:
        digest.update(path.name.encode() + path.read_bytes())
    return f"scalelab/registry:{digest.hexdigest()[:12]}"


def _image(client, log: Path) -> str:
    wanted = reference()
    if not compose_images._present(client, wanted):
        compose_images.ensure_base(client)
        compose_images.build(IMAGE, [wanted], log)
    return wanted


def _container(client, image: str):
    """The registry container on the kind network, running ``image``; made or replaced as needed."""
    import docker.errors
    try:
        client.networks.get(NETWORK)
    except docker.errors.NotFound as exc:
        raise RuntimeUnavailable("no Docker network 'kind': create the kind cluster first "
                                 "(Stack(lab=1, runtime=\"kind\").up(), or make test-kind)") from exc
    try:
        found = client.containers.get(CONTAINER)
        if found.image.tags and image in found.image.tags:
            if found.status != "running":
                found.start()
            return found
        found.remove(force=True)           # an older registry image: its blobs are a cache, rebuilt by a push
    except docker.errors.NotFound:
        pass
    return client.containers.run(image, name=CONTAINER, detach=True, network=NETWORK,
                                 ports={"5000/tcp": ("127.0.0.1", HOST_PORT)},
                                 restart_policy={"Name": "unless-stopped"},
                                 labels={"io.scalelab.role": "registry"})


def _wait_answering(timeout: float = 30.0) -> None:
    def seen(last) -> str:
        return type(last).__name__ if isinstance(last, Exception) else f"HTTP {last}" if last else "no answer"
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{HOST_PORT}/v2/", timeout=2).status_code, timeout,
               done=lambda status: status == 200, transient=httpx.HTTPError, interval=0.3, error=ServiceFailed,
               on_timeout=lambda last: f"the registry on 127.0.0.1:{HOST_PORT} did not answer within {timeout:.0f} s "
                                       f"({seen(last)}) — `docker logs {CONTAINER}`")


def _docker_exec(node: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", *(["-i"] if stdin is not None else []), node, *argv],
                          input=stdin, capture_output=True, text=True, timeout=60)


def point_nodes(nodes: list[str]) -> None:
    """Each node's containerd sends pulls of ``localhost:5001/...`` to the registry container."""
    for node in nodes:
        config = _docker_exec(node, "cat", "/etc/containerd/config.toml")
        if f'config_path = "{CERTS_D}"' not in config.stdout:
            raise RuntimeUnavailable(f"node {node}'s containerd does not read {CERTS_D} (the cluster was created from "
                                     "a kind-config.yaml without its containerdConfigPatches) — `make kind-delete`, "
                                     "then create the cluster again")
        folder = f"{CERTS_D}/{ADDRESS}"
        wrote = _docker_exec(node, "sh", "-c", f"mkdir -p '{folder}' && cat > '{folder}/hosts.toml'", stdin=HOSTS_TOML)
        if wrote.returncode != 0:
            raise ServiceFailed(f"writing {folder}/hosts.toml in {node} failed: {wrote.stderr.strip()[-300:]}")


def cluster_nodes(cluster: str) -> list[str]:
    out = subprocess.run(["kind", "get", "nodes", "--name", cluster], capture_output=True, text=True, timeout=60)
    nodes = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not nodes:
        raise RuntimeUnavailable(f"no kind cluster {cluster!r} ({out.stderr.strip()[-200:] or 'no nodes'}) — "
                                 "create it first: Stack(lab=1, runtime=\"kind\").up(), or make test-kind")
    return nodes


def ensure(client, cluster: str, log: Path) -> str:
    """The registry running and every node of ``cluster`` pulling through it; its address."""
    image = _image(client, log)
    _container(client, image)
    _wait_answering()
    point_nodes(cluster_nodes(cluster))
    return ADDRESS


def main() -> int:
    import docker

    from scalelab import paths
    try:
        client = docker.from_env()
        log = paths.default_state_dir() / "logs" / "registry-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        address = ensure(client, cluster_name(), log)
    except (RuntimeUnavailable, ServiceFailed) as exc:
        print(f"kind-registry: {exc}", file=sys.stderr)
        return 1
    print(f"kind-registry: {CONTAINER} answers on 127.0.0.1:{HOST_PORT}; the nodes of {cluster_name()} pull from it.\n"
          f"export SCALELAB_REGISTRY={address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
