"""The kind cluster's own life: created from kind-config.yaml, and deleted leaving the host as it
was before (``make test-kind``; runs last: every other kind test shares the cluster).

kind's nodes are privileged containers: the kubelet and systemd inside them change kernel
settings of the host (kind_host.HOST_SYSCTLS). The runtime records them before it creates the
cluster and puts them back when it deletes it; this test creates a cluster, sees what changed,
deletes it and compares.
"""

import os
import socket
import subprocess
import time

import pytest

from scalelab.errors import RuntimeUnavailable
from scalelab.runtimes.kind import cluster as kind_cluster, host as kind_host

from conftest import unavailable

pytestmark = [pytest.mark.kind, pytest.mark.last]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_create_from_kind_config_then_delete_restores_the_host(tmp_path):
    try:
        kind_cluster.require_tools()
        from scalelab.runtimes.common.engine import connect
        docker = connect()
        kind_cluster.node_image(docker)
    except RuntimeUnavailable as exc:
        unavailable("kind", exc)
    if os.geteuid() != 0:
        pytest.skip("putting back kernel settings needs root (the runtime says so in one line otherwise)")
    cluster = kind_cluster.Cluster(tmp_path)
    cluster.delete()                               # a cluster of the earlier tests: gone, host restored
    before = kind_host.read()

    started = time.monotonic()
    assert cluster.ensure(docker) is True
    create_s = time.monotonic() - started
    assert kind_host.recorded(cluster.name) == before
    nodes = subprocess.run(["docker", "ps", "--filter", f"label=io.x-k8s.kind.cluster={cluster.name}",
                            "--format", "{{.Label \"io.x-k8s.kind.role\"}}"], capture_output=True, text=True,
                           timeout=60).stdout.split()
    assert sorted(nodes) == ["control-plane", "worker", "worker"], "kind-config.yaml: 1 control plane + 2 workers"
    assert listening(kind_cluster.entry_port()), "kind publishes the entry NodePort on 127.0.0.1"
    changed = {name for name, value in kind_host.read().items() if value != before.get(name)}
    print(f"kind create cluster (cold): {create_s:.0f} s; host settings the nodes changed: {sorted(changed)}")

    cluster.delete()
    assert not cluster.exists()
    assert kind_host.read() == before, "every setting the cluster changed is back"
    assert not kind_host.recorded(cluster.name)
    left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=io.x-k8s.kind.cluster={cluster.name}"],
                          capture_output=True, text=True, timeout=60).stdout.split()
    assert left == [], "no node container left"
    registry = subprocess.run(["docker", "ps", "-a", "-q", "--filter", "name=^scalelab-registry$"],
                              capture_output=True, text=True, timeout=60).stdout.split()
    assert registry == [], "make kind-registry's registry goes with the cluster"
    assert subprocess.run(["docker", "network", "inspect", "kind"], capture_output=True, timeout=60).returncode != 0
    assert not listening(kind_cluster.entry_port())
