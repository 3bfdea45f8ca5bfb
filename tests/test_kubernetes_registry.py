"""The ``kubernetes`` runtime the way a learner with a cloud cluster uses it: the stack's images
pushed to a registry (``SCALELAB_REGISTRY``) and pulled from it by the nodes — no ``kind load``.

The cluster is the kind cluster of ``make test-kind``, seen through its kubeconfig as any
cluster; the registry is ``make kind-registry``'s (Debian's docker-registry, built here) on
Docker's kind network, and each node's containerd pulls ``localhost:5001/...`` from it. The
solution notebooks of labs 02 and 05 then run with ``RUNTIME="kubernetes"`` (``kind_sweep``:
``make test-kind``); a quicker test in the smoke set proves a real pull from the registry.
"""

import httpx
import pytest

from scalelab import Stack
from scalelab.errors import RuntimeUnavailable
from scalelab.plans import plan_for
from scalelab.references import solve
from scalelab.runtimes.kind import registry

from conftest import unavailable
from test_notebooks import SOLUTIONS, assert_every_check_passed, execute, lab_number_of


@pytest.fixture(scope="module")
def cluster_with_registry(tmp_path_factory):
    """The kind cluster (created or re-used), the registry beside it, and the cluster's kubeconfig."""
    state = tmp_path_factory.mktemp("kind-for-registry")
    try:
        kind = Stack(lab=2, runtime="kind", state_dir=state)
        kind.runtime._connect()                          # create or re-use the cluster
        address = registry.ensure(kind.runtime._docker(), kind.runtime.cluster.name, state / "registry-build.log")
    except RuntimeUnavailable as exc:
        unavailable("kind", exc)
    return kind.runtime.cluster.kubeconfig, address


@pytest.fixture
def as_any_cluster(cluster_with_registry, monkeypatch):
    kubeconfig, address = cluster_with_registry
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("SCALELAB_REGISTRY", address)
    monkeypatch.delenv("SCALELAB_KUBE_CONTEXT", raising=False)
    return address


def _images_of_pods(stack) -> set[str]:
    pods = stack.runtime.core.list_namespaced_pod(stack.runtime.namespace).items
    return {c.image for p in pods for c in p.spec.containers}


@pytest.mark.kind
def test_the_nodes_pull_the_stack_from_the_registry(as_any_cluster, tmp_path):
    stack = Stack(lab=2, runtime="kubernetes", state_dir=tmp_path / "state")
    solve(stack)
    try:
        stack.up()
        images = _images_of_pods(stack)
        assert images and all(i.startswith(f"{as_any_cluster}/scalelab/") for i in images), images
        # the registry holds what the pods run: its catalogue, asked over HTTP
        catalogue = httpx.get(f"http://127.0.0.1:{registry.HOST_PORT}/v2/_catalog", timeout=10).json()
        assert {i.split("/", 1)[1].split(":")[0] for i in images} <= set(catalogue["repositories"])
        pulled = [e for e in stack.runtime.core.list_namespaced_event(stack.runtime.namespace).items
                  if e.reason == "Pulled" and as_any_cluster in (e.message or "")]
        assert pulled, "a node pulled from the registry (a Pulled event naming it)"
        seen = {httpx.get(f"{stack.url('users')}/health", timeout=10).headers["x-instance"] for _ in range(12)}
        assert seen == {"users-1", "users-2", "users-3"}
    finally:
        stack.down(purge=True)


@pytest.mark.kind
def test_a_registry_that_does_not_answer_is_named(cluster_with_registry, tmp_path, monkeypatch):
    kubeconfig, _ = cluster_with_registry
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("SCALELAB_REGISTRY", "localhost:5999")     # nothing listens there
    stack = Stack(lab=2, runtime="kubernetes", state_dir=tmp_path / "state")
    with pytest.raises(Exception) as failed:
        stack.up()
    message = str(failed.value)
    assert "localhost:5999" in message and "\n" not in message.strip()
    assert not stack.runtime._namespace_exists(), "nothing was applied"


REGISTRY_LABS = [nb for nb in SOLUTIONS if "kubernetes" in plan_for(lab_number_of(nb)).runtimes]


@pytest.mark.kind
@pytest.mark.kind_sweep
@pytest.mark.timeout(2700)
@pytest.mark.parametrize("notebook", REGISTRY_LABS, ids=[nb.stem for nb in REGISTRY_LABS])
def test_solution_notebook_passes_on_a_cluster_through_its_registry(notebook, as_any_cluster, tmp_path, monkeypatch):
    assert_every_check_passed(execute(notebook, "solutions", tmp_path / "state", monkeypatch, "kubernetes"))


def test_the_lab_list_names_labs_02_and_05_for_any_cluster():
    assert [lab_number_of(nb) for nb in REGISTRY_LABS] == [2, 5]
