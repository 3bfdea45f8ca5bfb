"""The ``kubernetes`` runtime: any cluster of a kubeconfig context.

Without a cluster: what is missing is named in one line (no kubeconfig, no such context, the
images not on the nodes), and a registry reaches the rendered image names. On the kind cluster
of ``make test-kind`` (seen as any other cluster, through its kubeconfig and with the images
loaded into its nodes, no registry): lab 02's stack comes up, answers through a port-forward,
freezes a member from inside its pod, kills and starts one, and leaves nothing behind.
"""

import time

import httpx
import pytest
import yaml

from scalelab import Stack
from scalelab.errors import RuntimeUnavailable
from scalelab.plans import plan_for
from scalelab.references import solve
from scalelab.runtimes.kubernetes import images, render

from conftest import unavailable


def test_without_a_kubeconfig_the_runtime_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeUnavailable) as failed:
        Stack(lab=2, runtime="kubernetes", state_dir=tmp_path / "state")
    assert "no kubeconfig" in str(failed.value) and "\n" not in str(failed.value)


def test_an_unknown_context_is_named_with_the_ones_there_are(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "a",
                                      "contexts": [{"name": "a", "context": {"cluster": "a", "user": "a"}}],
                                      "clusters": [], "users": []}))
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv("SCALELAB_KUBE_CONTEXT", "prod")
    with pytest.raises(RuntimeUnavailable) as failed:
        Stack(lab=2, runtime="kubernetes", state_dir=tmp_path / "state")
    message = str(failed.value)
    assert "no context 'prod'" in message and "it has a" in message and "\n" not in message


def test_a_registry_becomes_the_images_name_in_the_kustomization(tmp_path):
    directory = render.write_kustomization(tmp_path, plan_for(2), "ns", "abc123", None, registry="reg.example:5000")
    images = yaml.safe_load((directory / "kustomization.yaml").read_text())["images"]
    assert {"name": "scalelab/shop", "newTag": "abc123", "newName": "reg.example:5000/scalelab/shop"} in images
    plain = render.write_kustomization(tmp_path, plan_for(2), "ns", "abc123", None)
    assert all("newName" not in image for image in yaml.safe_load((plain / "kustomization.yaml").read_text())["images"])


def test_lab08_pins_the_kafka_image_and_tells_the_broker_one_port_for_the_stacks_life(tmp_path):
    from scalelab.runtimes.common import images as compose_images
    first = yaml.safe_load((render.write_kustomization(tmp_path, plan_for(8), "ns", "abc123", None)
                            / "kustomization.yaml").read_text())
    assert {"name": "scalelab/kafka", "newTag": compose_images.kafka_tag()} in first["images"]
    port = [g for g in first["configMapGenerator"] if g["name"] == "kafka-settings"][0]["literals"]
    again = yaml.safe_load((render.write_kustomization(tmp_path, plan_for(8), "ns", "abc123", None)
                            / "kustomization.yaml").read_text())
    assert [g for g in again["configMapGenerator"] if g["name"] == "kafka-settings"][0]["literals"] == port
    assert port[0].startswith("KAFKA_EXTERNAL_PORT=") and port[0].split("=")[1].isdigit()
    lab5 = (render.write_kustomization(tmp_path / "lab5", plan_for(5), "ns", "abc123", None)
            / "kustomization.yaml").read_text()
    assert "kafka" not in lab5, "only lab 08 names the broker"


def test_lab07_runs_the_prometheus_built_with_kubernetes_discovery_or_says_how_to_build_it(tmp_path, monkeypatch):
    directory = render.write_kustomization(tmp_path, plan_for(7), "ns", "abc123", None)
    pinned = yaml.safe_load((directory / "kustomization.yaml").read_text())["images"]
    assert {"name": "scalelab/prometheus-k8s", "newTag": images.tag()} in pinned
    lab2 = render.write_kustomization(tmp_path / "lab2", plan_for(2), "ns", "abc123", None)
    assert "prometheus-k8s" not in (lab2 / "kustomization.yaml").read_text(), "only a plan with Prometheus builds it"

    monkeypatch.setenv("SCALELAB_KIND_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(RuntimeUnavailable) as failed:
        images._built_binaries()
    message = str(failed.value)
    assert "make prometheus-k8s" in message and images.prometheus_version() in message and "\n" not in message

    stale = tmp_path / "stale-cache" / "bin"
    stale.mkdir(parents=True)
    for program in images.PROGRAMS:      # an older build: the version it reports is not the pinned one
        (stale / program).write_text("#!/bin/sh\necho 'prometheus, version 2.42.0 (branch: debian)'\n")
        (stale / program).chmod(0o755)
    monkeypatch.setenv("SCALELAB_KIND_CACHE", str(stale.parent))
    with pytest.raises(RuntimeUnavailable, match="prometheus is 2.42.0"):
        images._built_binaries()


def test_an_exec_status_gives_the_exit_code_or_why_the_command_never_ran():
    from scalelab.runtimes.kubernetes.api import EXEC_NOT_RUN, _exit_status
    assert _exit_status("") == (0, "") and _exit_status("{'metadata': {}, 'status': 'Success'}") == (0, "")
    exited = ('{"status": "Failure", "reason": "NonZeroExitCode", '
              '"details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}')
    assert _exit_status(exited) == (3, "")
    never_ran = ('{"status": "Failure", "message": "failed to exec in container: exec: \\"valkey-cli\\": executable '
                 'file not found in $PATH: unknown", "reason": "InternalError", "details": {"causes": '
                 '[{"message": "error executing command in container"}]}, "code": 500}')
    code, problem = _exit_status(never_ran)
    assert code == EXEC_NOT_RUN and "executable file not found" in problem


# -- on the kind cluster, as any cluster ---------------------------------------------------------
@pytest.fixture(scope="module")
def kind_as_any_cluster(tmp_path_factory):
    """The kind runtime's cluster and images (loaded into its nodes), then its kubeconfig."""
    state = tmp_path_factory.mktemp("kind-images")
    try:
        kind = Stack(lab=2, runtime="kind", state_dir=state)
    except RuntimeUnavailable as exc:
        unavailable("kind", exc)
    runtime = kind.runtime
    runtime._connect()                                   # create or re-use the cluster
    runtime.tag = runtime._images(plan_for(2))            # build and `kind load` them
    return runtime.cluster.kubeconfig


@pytest.fixture(scope="module")
def lab2(kind_as_any_cluster, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KUBECONFIG", str(kind_as_any_cluster))
    mp.delenv("SCALELAB_KUBE_CONTEXT", raising=False)
    mp.delenv("SCALELAB_REGISTRY", raising=False)
    stack = Stack(lab=2, runtime="kubernetes", state_dir=tmp_path_factory.mktemp("any-cluster"))
    solve(stack)                                          # the learner's upstream and tokens: the reference
    stack.up()
    yield stack
    stack.down(purge=True)
    mp.undo()


@pytest.mark.kind
def test_lab02_comes_up_on_a_context_and_answers_through_a_port_forward(lab2):
    assert lab2.runtime.name == "kubernetes" and lab2.runtime.context == "kind-scalelab"
    url = lab2.url("users")
    assert url.startswith("http://127.0.0.1:") and not url.endswith((":30080", ":8080"))
    seen = {httpx.get(f"{url}/health", timeout=10).headers["x-instance"] for _ in range(12)}
    assert seen == {"users-1", "users-2", "users-3"}, "nginx in the cluster spreads over the three pods"
    services = lab2.runtime.core.list_namespaced_service(lab2.runtime.namespace).items
    assert all(s.spec.type == "ClusterIP" for s in services), "no NodePort on someone else's cluster"


@pytest.mark.kind
def test_a_frozen_member_is_paused_from_inside_its_pod_then_thawed(lab2):
    member_url = lab2.member_url("users-2")
    lab2.kill("users-2", "STOP")
    try:
        assert lab2.status().set_index("member").state["users-2"] == "paused"
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{member_url}/health", timeout=2)
    finally:
        lab2.kill("users-2", "CONT")
    assert httpx.get(f"{member_url}/health", timeout=10).status_code == 200


@pytest.mark.kind
def test_a_killed_member_stays_down_until_started(lab2):
    lab2.kill("users-3")
    time.sleep(3)                                        # a Deployment alone would have replaced it by now
    pods = lab2.runtime.core.list_namespaced_pod(lab2.runtime.namespace, label_selector="app.kubernetes.io/name=users")
    assert len([p for p in pods.items if p.metadata.deletion_timestamp is None]) == 2
    assert lab2.status().set_index("member").state["users-3"] != "running"
    lab2.start("users-3")
    assert httpx.get(f"{lab2.member_url('users-3')}/health", timeout=10).status_code == 200


@pytest.mark.kind
def test_images_missing_on_the_nodes_are_named_with_how_to_load_them(kind_as_any_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kind_as_any_cluster))
    monkeypatch.setattr("scalelab.runtimes.common.images.tag", lambda: "not-built-anywhere")
    stack = Stack(lab=2, runtime="kubernetes", state_dir=tmp_path)
    with pytest.raises(RuntimeUnavailable) as failed:
        stack.up()
    message = str(failed.value)
    assert "lacks" in message and "kind load docker-image" in message and "SCALELAB_REGISTRY" in message
    assert not stack.runtime._namespace_exists(), "nothing was applied"
