"""stack/deploy/k8s without a cluster: every overlay renders, validates against the Kubernetes
1.34 OpenAPI schema (strict), and has the properties the kind runtime and lab 06 rely on.

What a cluster would add (pods starting, probes answering, the HPA scaling) is tested by
tests/test_kind.py under `make test-kind`, on a machine with Docker and kind.
"""

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from scalelab.kube_schema import validate
from scalelab.plans import PLANS
from scalelab.runtimes.common import images as compose_images
from scalelab.runtimes.kubernetes import images as kube_images

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "stack" / "deploy" / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
LABS = {int(p.name[3:]): p for p in OVERLAYS}
KIND_CONFIG = yaml.safe_load((REPO / "kind-config.yaml").read_text())
# compose_images' images, and the one only the Kubernetes runtimes build (lab 07's Prometheus
# with Kubernetes service discovery)
SHOP_IMAGES = ({f"scalelab/{image.name}" for image in compose_images.IMAGES} | {f"scalelab/{kube_images.NAME}"}
               | {f"scalelab/{compose_images.KAFKA.name}"})
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None,
                                   reason="kubectl not found: the manifests are rendered with `kubectl kustomize`")


def render(path: Path) -> list[dict]:
    from scalelab.runtimes.kubernetes.tools import kustomize
    return [doc for doc in yaml.safe_load_all(kustomize(path)) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not found: the manifests are rendered with `kubectl kustomize`")
    found = {p.name: render(p) for p in OVERLAYS}
    found["metrics-server"] = render(K8S / "metrics-server")
    return found


def pod_specs(objects):
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj, obj["spec"]["template"]["spec"]


def containers(pod):
    return pod.get("initContainers", []) + pod["containers"]


def by_kind(objects, kind):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_every_lab_with_a_plan_up_to_03_and_lab_06_has_an_overlay():
    assert {1, 2, 3, 6} <= set(LABS)
    assert set(LABS) <= set(PLANS)


@needs_kubectl
def test_every_overlay_and_metrics_server_render_and_validate_against_kubernetes_1_32(rendered):
    for name, objects in rendered.items():
        assert objects, name
        assert validate(objects) == [], name


def test_the_schema_check_rejects_a_typo_so_passing_it_means_something():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"contianers": []}}}}
    assert validate([bad])


@needs_kubectl
def test_every_container_requests_and_limits_cpu_and_memory(rendered):
    for name, objects in rendered.items():
        for obj, pod in pod_specs(objects):
            for c in containers(pod):
                resources = c.get("resources", {})
                for part in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{name} {obj['metadata']['name']}/{c['name']} {part}"


@needs_kubectl
def test_every_pod_runs_as_non_root_without_privilege_escalation(rendered):
    for name, objects in rendered.items():
        for obj, pod in pod_specs(objects):
            for c in containers(pod):
                non_root = c.get("securityContext", {}).get("runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot"))
                assert non_root is True, f"{name} {obj['metadata']['name']}/{c['name']}"
                assert c.get("securityContext", {}).get("allowPrivilegeEscalation") is False, f"{name} {c['name']}"


@needs_kubectl
def test_images_are_the_ones_compose_images_builds_pinned_never_latest_and_pulled_only_if_absent(rendered):
    from scalelab.runtimes.kind.cluster import METRICS_SERVER_IMAGE
    for name, objects in rendered.items():
        for obj, pod in pod_specs(objects):
            for c in containers(pod):
                image = c["image"]
                assert c.get("imagePullPolicy") == "IfNotPresent", f"{name} {c['name']}"
                repo, _, tag = image.rpartition(":")
                assert tag and tag != "latest" and "/" not in tag, f"{name} {c['name']}: {image}"
                if name == "metrics-server":
                    assert image == METRICS_SERVER_IMAGE
                else:
                    assert repo in SHOP_IMAGES, f"{name} {c['name']}: {image} is not one the driver builds"


@needs_kubectl
def test_http_probes_ask_paths_the_services_really_serve(rendered):
    from shop.main import create_app
    # GET routes of the shop app (the probes' method), as its OpenAPI document lists them
    shop_paths = {path for path, methods in create_app().openapi()["paths"].items() if "get" in methods}
    assert {"/ready", "/health"} <= shop_paths
    nginx_conf = (REPO / "stack/deploy/nginx/compose.conf").read_text()
    checked = 0
    for name, objects in rendered.items():
        if name == "metrics-server":
            continue      # metrics-server's own /livez and /readyz
        for obj, pod in pod_specs(objects):
            for c in pod["containers"]:
                for probe in ("readinessProbe", "livenessProbe"):
                    assert probe in c, f"{name} {c['name']} has no {probe}"
                    http = c[probe].get("httpGet")
                    if not http:
                        continue
                    checked += 1
                    if c["image"].startswith("scalelab/shop"):
                        assert http["path"] in shop_paths, (name, c["name"], http["path"])
                    elif c["image"].startswith("scalelab/nginx"):
                        assert f"location = {http['path']} " in nginx_conf, (name, http["path"])
                    port = http["port"]
                    assert port in [p.get("name") for p in c["ports"]] + [p["containerPort"] for p in c["ports"]]
    assert checked


@needs_kubectl
def test_users_readiness_is_ready_and_liveness_is_health(rendered):
    for name in LABS:
        users = by_kind(rendered[f"lab{name:02d}"], "Deployment")["users"]
        c = users["spec"]["template"]["spec"]["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"


@needs_kubectl
def test_users_grace_period_outlasts_prestop_plus_uvicorns_graceful_shutdown(rendered):
    dockerfile = (REPO / "stack/deploy/shop/Dockerfile").read_text()
    image_timeout = int(re.search(r'"--timeout-graceful-shutdown", "(\d+)"', dockerfile)[1])
    for lab in LABS:
        pod = by_kind(rendered[f"lab{lab:02d}"], "Deployment")["users"]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        args = c["args"]
        timeout = int(args[args.index("--timeout-graceful-shutdown") + 1])
        assert timeout == image_timeout, "the manifest and the image stop the same way"
        pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        assert int(pre_stop[1]) + timeout < pod["terminationGracePeriodSeconds"]
        strategy = by_kind(rendered[f"lab{lab:02d}"], "Deployment")["users"]["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, "a rolling update keeps every old pod until a new one is ready"


@needs_kubectl
def test_service_selectors_match_the_pod_labels_of_a_workload(rendered):
    for name, objects in rendered.items():
        templates = [o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] in WORKLOADS]
        for service in by_kind(objects, "Service").values():
            selector = service["spec"]["selector"]
            assert any(selector.items() <= labels.items() for labels in templates), f"{name} Service/{service['metadata']['name']}"
            for port in service["spec"]["ports"]:
                if isinstance(port["targetPort"], str):   # a named port exists on a selected pod
                    pods = [o["spec"]["template"] for o in objects if o["kind"] in WORKLOADS
                            and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()]
                    names = {p.get("name") for t in pods for c in t["spec"]["containers"] for p in c.get("ports", [])}
                    assert port["targetPort"] in names, (name, service["metadata"]["name"], port)


@needs_kubectl
def test_workloads_and_pods_carry_the_recommended_labels(rendered):
    for name, objects in rendered.items():
        if name == "metrics-server":
            continue
        for obj in objects:
            labels = obj["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/part-of") == "scalelab", f"{name} {obj['kind']}/{obj['metadata']['name']}"
            if obj["kind"] in WORKLOADS:
                template = obj["spec"]["template"]["metadata"]["labels"]
                assert {"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of"} <= set(template)
                assert template["app.kubernetes.io/name"] == obj["metadata"]["name"], "members are found by this label"


@needs_kubectl
def test_entry_nodeports_per_lab_are_the_ones_kind_config_publishes(rendered):
    """The main entry (nginx, or the user service without it) on 30080; the order service on 30081, or
    lab 06's blue-green Service `live` (that lab has no order service)."""
    from scalelab.runtimes.kubernetes.render import NODE_PORTS
    mapped = {m["containerPort"] for n in KIND_CONFIG["nodes"] for m in n.get("extraPortMappings", [])}
    for lab, path in LABS.items():
        services = by_kind(rendered[path.name], "Service").values()
        node_ports = sorted((s["metadata"]["name"], p["nodePort"]) for s in services if s["spec"].get("type") == "NodePort"
                            for p in s["spec"]["ports"])
        entries = ["nginx" if PLANS[lab].has("nginx") else "users"] + (["orders"] if PLANS[lab].has("orders") else []) \
            + (["live"] if PLANS[lab].has("green") else [])
        assert node_ports == sorted((entry, NODE_PORTS[entry]) for entry in entries), (path.name, node_ports)
        assert {port for _, port in node_ports} <= mapped, "kind-config.yaml publishes every entry NodePort"


@needs_kubectl
def test_each_overlay_runs_its_plans_services_replicas_and_settings(rendered):
    base_settings = {"SHOP_PLANNED_REPLICAS", "SHOP_WORKSPACE", "SHOP_EXERCISES"}
    for lab, path in LABS.items():
        plan, objects = PLANS[lab], rendered[path.name]
        workloads = {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOADS}
        # (lab 08's Kafka broker waits at 0 replicas for the notebook to start it: not the plan's)
        on_demand = {name for name, o in workloads.items()
                     if o["spec"].get("replicas") == 0 and name not in plan.replicas}
        assert on_demand <= ({"kafka"} if lab == 8 else set()), (path.name, sorted(on_demand))
        assert set(workloads) - on_demand == set(plan.replicas), (path.name, sorted(workloads))
        assert workloads["users"]["spec"]["replicas"] == plan.replicas["users"], path.name
        settings = by_kind(objects, "ConfigMap")["shop-settings"]
        extra = {k: v for k, v in settings["data"].items() if k not in base_settings}
        # (derived, as compose_env derives it: the order service calls the user service through nginx)
        derived = {"SHOP_USERS_URL": "http://nginx:8080"} if all(map(plan.has, ("orders", "users", "nginx"))) else {}
        assert extra == {**plan.settings, **derived}, f"{path.name}: settings differ from scalelab.plans.PLANS[{lab}]"


@needs_kubectl
def test_no_secret_is_in_the_repository_and_every_secret_ref_names_the_runtimes_secret(rendered):
    keys = set()
    for name, objects in rendered.items():
        assert not by_kind(objects, "Secret"), f"{name}: a Secret in the repository"
        text = yaml.safe_dump_all(objects)
        keys |= set(re.findall(r"secretKeyRef:\s*\n\s*key: ([\w-]+)\n\s*name: scalelab-secrets", text))
        assert not re.search(r"secretKeyRef:\s*\n\s*key: [\w-]+\n\s*name: (?!scalelab-secrets)", text), name
    from scalelab.runtimes.kubernetes.render import SECRET_KEYS
    assert keys == {*SECRET_KEYS.values(), "replication-password"}


@needs_kubectl
def test_the_hpa_scales_the_users_deployment_on_cpu_utilization_with_a_short_scale_down_window(rendered):
    objects = rendered["lab06"]
    hpa = by_kind(objects, "HorizontalPodAutoscaler")["users"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] in by_kind(objects, "Deployment")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert 10 <= metric["resource"]["target"]["averageUtilization"] <= 90
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] <= 60, "the lab ends in minutes"
    users = by_kind(objects, "Deployment")["users"]["spec"]["template"]["spec"]["containers"][0]
    assert users["resources"]["requests"]["cpu"], "utilization is measured against the CPU request"


def test_the_hpa_file_holds_the_autoscaler_specs_defaults():
    autoscaler = pytest.importorskip("scalelab.autoscaler", reason="scalelab.autoscaler (HpaSpec) not in this tree yet")
    spec = autoscaler.HpaSpec()
    hpa = yaml.safe_load((K8S / "overlays/lab06/hpa.yaml").read_text())
    assert hpa["spec"]["minReplicas"] == spec.min_replicas and hpa["spec"]["maxReplicas"] == spec.max_replicas
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == spec.target_cpu_utilization
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == spec.scale_down_stabilization_s
    users = yaml.safe_load_all((K8S / "base/users.yaml").read_text())
    deployment = next(d for d in users if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == \
        f"{spec.cpu_request_millicores}m"


def test_the_kind_hpa_is_built_from_the_file_with_the_specs_numbers():
    from types import SimpleNamespace
    from scalelab.runtimes.kubernetes.hpa import hpa_manifest
    spec = SimpleNamespace(service="users", min_replicas=2, max_replicas=7, target_cpu_utilization=35,
                           scale_down_stabilization_s=12)
    hpa = hpa_manifest(spec, "scalelab-test")
    assert hpa["metadata"]["namespace"] == "scalelab-test"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 7)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 35
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 12
    assert validate([hpa]) == []


@needs_kubectl
def test_metrics_server_skips_kubelet_tls_verification_for_kind_and_serves_the_metrics_api(rendered):
    objects = rendered["metrics-server"]
    args = by_kind(objects, "Deployment")["metrics-server"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--kubelet-insecure-tls" in args
    api = by_kind(objects, "APIService")["v1beta1.metrics.k8s.io"]
    assert api["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system"}


@needs_kubectl
def test_the_drivers_generated_kustomization_sets_namespace_tags_secret_and_workspace(tmp_path):
    """What the kind runtime applies, rendered here from a state dir (no cluster involved)."""
    from scalelab.runtimes.kubernetes.render import SECRET_KEYS, render, write_kustomization
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "hpa.py").write_text("def desired_replicas(*a, **k):\n    return 1\n")
    home = tmp_path / "kind"
    home.mkdir()
    directory = write_kustomization(home, PLANS[6], "scalelab-test", compose_images.tag(), workspace)
    objects = render(directory)
    assert validate(objects) == []
    assert stat.S_IMODE(os.stat(directory / "secrets.env").st_mode) == 0o600
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "scalelab", "down() and pruning find it"
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "scalelab-test"
        elif obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "APIService"):
            assert obj["metadata"]["namespace"] == "scalelab-test", obj["metadata"]["name"]
    images = {c["image"] for _, pod in pod_specs(objects) for c in containers(pod)}
    assert images == {f"scalelab/{n}:{compose_images.tag()}" for n in ("shop", "postgres", "valkey", "nginx")}
    (secret,) = by_kind(objects, "Secret").values()
    assert secret["metadata"]["name"] == "scalelab-secrets", "the plain name lab 06's exercise YAML refers to"
    assert set(secret["data"]) == {*SECRET_KEYS.values(), "replication-password"}
    assert "shop-settings" in by_kind(objects, "ConfigMap")
    workspace_cm = by_kind(objects, "ConfigMap")["workspace"]   # a plain name: updated in place
    assert workspace_cm["data"]["hpa.py"].startswith("def desired_replicas")
    settings = by_kind(objects, "ConfigMap")["shop-settings"]
    assert settings["data"]["SHOP_AUTH_REQUIRED"] == "true", "the overlay's settings survive the merge"
    assert json.loads(settings["data"]["SHOP_EXERCISES"]) == list(PLANS[6].exercises)
    users = by_kind(objects, "Deployment")["users"]["spec"]["template"]["spec"]
    assert users["volumes"][0]["configMap"]["name"] == workspace_cm["metadata"]["name"]
    # The overlay is referenced, not copied: the repository's files are never edited at run time.
    assert "overlays/lab06" in (directory / "kustomization.yaml").read_text()


def test_kind_config_validates_against_kinds_v1alpha4_types():
    import jsonschema
    schema = json.loads((K8S / "kind-config.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(KIND_CONFIG, schema)
    typo = json.loads(json.dumps(KIND_CONFIG))
    typo["nodes"][0]["extraPortMapping"] = typo["nodes"][0].pop("extraPortMappings")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, schema)
    wrong = json.loads(json.dumps(KIND_CONFIG))
    wrong["nodes"][0]["extraPortMappings"][0]["protocol"] = "tcp"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, schema)


def _without_upstream(text: str) -> list[str]:
    """nginx.conf's directives outside the upstream section, comments and blank lines dropped."""
    text = re.sub(r"# ---- upstream.*?# ---- end of upstream[^\n]*\n", "", text, flags=re.S)
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#") and "generation" not in line]


def test_the_k8s_nginx_conf_is_the_compose_one_but_for_its_upstream_over_the_pods():
    k8s = (K8S / "components/nginx/nginx.conf").read_text()
    compose = (REPO / "stack/deploy/nginx/compose.conf").read_text()
    assert _without_upstream(k8s) == _without_upstream(compose)
    assert "server users-pods.__NAMESPACE__.svc.cluster.local:8000 resolve" in k8s


@needs_kubectl
def test_the_k8s_nginx_conf_passes_nginx_t_once_the_container_fills_it_in(rendered, tmp_path):
    import subprocess
    from scalelab.binaries import nginx
    from scalelab.errors import RuntimeUnavailable
    try:
        binary = nginx()
    except RuntimeUnavailable as exc:
        pytest.skip(f"no nginx binary to test with: {exc}")
    deployment = by_kind(rendered["lab06"], "Deployment")["nginx"]
    script = deployment["spec"]["template"]["spec"]["containers"][0]["args"][0]
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search x.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    # (the backup server's Service name resolves only in a cluster: an address stands in for it)
    text = (K8S / "components/nginx/nginx.conf").read_text()
    assert "server users:8000 backup;" in text
    (conf_dir / "nginx.conf").write_text(text.replace("server users:8000 backup;", "server 127.0.0.1:8000 backup;"))
    # The container's own command, pointed at these files, and `nginx -t` instead of exec nginx.
    script = (script.replace("$$(", "$(").replace("/tmp/", f"{tmp_path}/").replace("/etc/resolv.conf", str(resolv))
              .replace("/etc/scalelab-k8s", str(conf_dir)).replace("exec nginx", f"exec {binary.path} -t"))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                         env={"POD_NAMESPACE": "scalelab-test", "PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    filled = (tmp_path / "nginx.conf").read_text()
    assert "resolver 10.96.0.10 " in filled and "users-pods.scalelab-test.svc.cluster.local" in filled


def test_the_kind_runtime_names_what_is_missing_in_one_line(tmp_path, monkeypatch):
    from scalelab import Stack
    from scalelab.errors import RuntimeUnavailable
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))      # no kind, no kubectl, no docker on this PATH
    monkeypatch.setenv("SCALELAB_KIND_CACHE", str(empty))   # nor built by make kind-offline
    with pytest.raises(RuntimeUnavailable) as caught:
        Stack(lab=6, runtime="kind", state_dir=tmp_path / "state")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("kind not found") and "use runtime=\"local\"" in message


@pytest.mark.compose   # needs the engine: runs in make test's compose phase, where one is started
def test_the_node_image_is_kinds_official_one_or_the_offline_one_and_a_missing_one_is_named(monkeypatch):
    """Against the real engine (the images are checked there, not assumed)."""
    from scalelab.errors import RuntimeUnavailable
    from scalelab.runtimes.kind import cluster as kind_cluster
    try:
        from scalelab.runtimes.common.engine import connect
        client = connect()
    except RuntimeUnavailable as exc:
        (pytest.fail if os.environ.get("SCALELAB_REQUIRE_COMPOSE") else pytest.skip)(f"no Docker engine to ask: {exc}")
    assert re.fullmatch(r"kindest/node:v1\.34\.\d+@sha256:[0-9a-f]{64}", kind_cluster.OFFICIAL_NODE_IMAGE)
    monkeypatch.delenv("SCALELAB_KIND_NODE_IMAGE", raising=False)
    present = [image for image in (kind_cluster.OFFICIAL_NODE_IMAGE, kind_cluster.OFFLINE_NODE_IMAGE)
               if kind_cluster.image_present(client, image)]
    if present:                                  # the official one first, when both are here
        assert kind_cluster.node_image(client) == present[0]
    monkeypatch.setattr(kind_cluster, "OFFICIAL_NODE_IMAGE", "kindest/node:v1.34.0@sha256:" + "0" * 64)
    monkeypatch.setattr(kind_cluster, "OFFLINE_NODE_IMAGE", "scalelab/kind-node:v0.0.0-absent")
    with pytest.raises(RuntimeUnavailable) as caught:
        kind_cluster.node_image(client)
    message = str(caught.value)
    assert "\n" not in message
    assert f"docker pull {kind_cluster.OFFICIAL_NODE_IMAGE}`" in message and "make kind-offline" in message
    monkeypatch.setenv("SCALELAB_KIND_NODE_IMAGE", "example/absent:v1")
    with pytest.raises(RuntimeUnavailable, match=r"example/absent:v1 \(SCALELAB_KIND_NODE_IMAGE\) not found"):
        kind_cluster.node_image(client)


@needs_kubectl
def test_every_dollar_paren_reference_names_a_variable_defined_before_it_or_is_escaped(rendered):
    """Kubernetes expands $(VAR) in env values, command and args only from variables defined
    EARLIER in the same container; anything else stays literal (a silently broken DSN)."""
    for name, objects in rendered.items():
        for obj, pod in pod_specs(objects):
            for c in containers(pod):
                defined = []
                for env in c.get("env", []):
                    for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", env.get("value", "")):
                        assert ref in defined, f"{name} {c['name']}: {env['name']} uses $({ref}) before it is defined"
                    defined.append(env["name"])
                for arg in c.get("command", []) + c.get("args", []):
                    for ref in re.findall(r"(?<!\$)\$\(([^)]*)\)", arg):
                        assert ref in defined, f"{name} {c['name']}: $({ref}) in its command: write $$( for a shell"


# -- the pods' containers, run with Docker (marker compose: needs an engine) --------------------
# No Kubernetes here: each container runs the image, user, read-only root, command/args, env and
# mounts its rendered pod spec gives it — the kubelet's $(VAR) expansion done by expand() below —
# on a Docker network whose embedded DNS stands in for the cluster's (a network alias per Service
# name). What this proves: the manifests' commands, users and file-system rules work with the
# images the build produces. What it does not: scheduling, probes by the kubelet, kube-proxy.

def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's expansion: $(VAR) from variables defined before, $$ → $, the rest literal."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), value)


def container_env(c: dict, config_maps: dict, extra: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
        else:
            env[item["name"]] = extra[item["name"]]        # secretKeyRef / fieldRef: the test's values
    return env


@pytest.fixture(scope="module")
def docker_images():
    from scalelab.errors import RuntimeUnavailable
    from scalelab.runtimes.common.engine import connect
    try:
        client = connect()
        tag = compose_images.ensure(client, Path("/tmp/scalelab-k8s-test-build.log"))
    except RuntimeUnavailable as exc:
        (pytest.fail if os.environ.get("SCALELAB_REQUIRE_COMPOSE") else pytest.skip)(f"no Docker engine: {exc}")
    return client, tag


@pytest.mark.compose
@needs_kubectl
def test_the_lab06_pods_containers_run_as_specified_and_nginx_balances_over_the_pods(rendered, docker_images, tmp_path):
    import secrets
    import time
    import httpx
    client, tag = docker_images
    objects = rendered["lab06"]
    config_maps = by_kind(objects, "ConfigMap")
    deployments, statefulsets = by_kind(objects, "Deployment"), by_kind(objects, "StatefulSet")
    secret = {"POSTGRES_PASSWORD": secrets.token_urlsafe(18), "SHOP_DB_PASSWORD": secrets.token_urlsafe(18),
              "SHOP_JWT_SECRET": secrets.token_urlsafe(32), "REDIS_PASSWORD": secrets.token_urlsafe(18)}
    suffix = secrets.token_hex(4)
    network = client.networks.create(f"scalelab-k8s-test-{suffix}")
    started = []

    def run(pod_spec: dict, c: dict, alias: list[str], extra: dict, name: str, **kwargs):
        sc = {**pod_spec.get("securityContext", {}), **c.get("securityContext", {})}
        image = c["image"].rsplit(":", 1)[0] + f":{tag}"
        command = [expand(a, {}) for a in c.get("args", [])] or None
        container = client.containers.create(
            image, command=command, entrypoint=c.get("command"), name=f"{name}-{suffix}",
            user=f"{sc['runAsUser']}:{sc['runAsGroup']}", read_only=sc.get("readOnlyRootFilesystem", False),
            environment=container_env(c, config_maps, extra), cap_drop=["ALL"],
            security_opt=["no-new-privileges"], **kwargs)
        started.append(container)
        network.connect(container, aliases=alias)
        container.start()
        return container

    def wait(predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (httpx.HTTPError, KeyError):
                pass
            time.sleep(0.2)
        logs = "\n".join(f"--- {c.name}\n{c.logs(tail=15).decode(errors='replace')}" for c in started)
        raise AssertionError(f"{what} not within {timeout}s\n{logs}")

    try:
        # Postgres: its volume is a root-owned 0777 host directory, as kind's local-path provisioner makes.
        pg_spec = statefulsets["postgres"]["spec"]["template"]["spec"]
        pv = tmp_path / "pv"
        pv.mkdir()
        pv.chmod(0o777)
        pg = run(pg_spec, pg_spec["containers"][0], ["postgres"], secret, "postgres",
                 volumes={str(pv): {"bind": "/var/lib/postgresql/data", "mode": "rw"}})
        probe = pg_spec["containers"][0]["readinessProbe"]["exec"]["command"]
        wait(lambda: pg.exec_run(probe).exit_code == 0, 90, "postgres readinessProbe passing")

        # users: the migrate initContainer to completion, then two replicas, as pods named users-a/-b.
        users_spec = deployments["users"]["spec"]["template"]["spec"]
        init = users_spec["initContainers"][0]
        migrate = run(users_spec, init, [], secret, "migrate")
        assert migrate.wait(timeout=150)["StatusCode"] == 0, migrate.logs().decode()
        workspace = tmp_path / "workspace"     # the optional ConfigMap volume, absent: an empty directory
        workspace.mkdir()
        workspace.chmod(0o755)
        # Redis (Valkey): read-only root, the password file in its in-memory /tmp.
        redis_spec = deployments["redis"]["spec"]["template"]["spec"]
        redis = run(redis_spec, redis_spec["containers"][0], ["redis"], secret, "redis", tmpfs={"/tmp": "size=1m"})
        probe = redis_spec["containers"][0]["readinessProbe"]["exec"]["command"]
        wait(lambda: redis.exec_run(probe).exit_code == 0, 30, "redis readinessProbe passing")
        pods = []
        for pod in ("users-a", "users-b"):
            # aliases: the headless Service's name, and `users` standing in for the ClusterIP Service
            # (Docker's DNS answers with both containers' addresses instead of one virtual IP)
            pods.append(run(users_spec, users_spec["containers"][0], ["users-pods.scalelab.svc.cluster.local", "users"],
                            {**secret, "SHOP_INSTANCE": pod}, pod,
                            tmpfs={"/tmp": ""}, volumes={str(workspace): {"bind": "/workspace", "mode": "ro"}}))
        for pod in pods:
            wait(lambda: pod.exec_run(["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]).exit_code == 0,
                 60, f"{pod.name} /ready (its readinessProbe path)")

        # nginx: the container's own shell command fills in the namespace and Docker's DNS server.
        nginx_spec = deployments["nginx"]["spec"]["template"]["spec"]
        conf = tmp_path / "nginx-conf"
        conf.mkdir()
        shutil.copy(K8S / "components/nginx/nginx.conf", conf / "nginx.conf")
        conf.chmod(0o755)
        (conf / "nginx.conf").chmod(0o644)
        nginx = run(nginx_spec, nginx_spec["containers"][0], [], {"POD_NAMESPACE": "scalelab"}, "nginx",
                    tmpfs={"/tmp": ""}, volumes={str(conf): {"bind": "/etc/scalelab-k8s", "mode": "ro"}},
                    ports={"8080/tcp": ("127.0.0.1", None)})
        nginx.reload()
        port = nginx.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{port}"
        wait(lambda: httpx.get(f"{base}/nginx/health", timeout=2).json()["generation"] == "kind", 30, "nginx up")
        seen = set()
        wait(lambda: seen.update(httpx.get(f"{base}/health", timeout=5).headers.get("x-instance", "") for _ in range(10))
             or seen >= {"users-a", "users-b"}, 30, "nginx answering from both users pods")

        # A pod going away (SIGTERM, as the kubelet sends after preStop): nginx retries on the other one.
        statuses = []
        began = time.monotonic()
        pods[1].stop(timeout=users_spec["terminationGracePeriodSeconds"])
        stopped_in = time.monotonic() - began
        pods[1].reload()
        assert pods[1].attrs["State"]["ExitCode"] == 0, "uvicorn (PID 1, as in a pod) exits cleanly on SIGTERM"
        assert stopped_in < users_spec["terminationGracePeriodSeconds"], "well inside the grace period: no SIGKILL"
        for _ in range(20):
            statuses.append(httpx.get(f"{base}/users", params={"limit": 1}, timeout=5).status_code)
        assert set(statuses) == {200}, (statuses, nginx.logs(tail=20).decode(errors="replace"))
        # The cache works from the pods too (SHOP_REDIS_URL expanded from the Secret's password).
        for _ in range(3):
            httpx.get(f"{base}/users/1", timeout=5)
        cache = httpx.get(f"{base}/stats", timeout=5).json()["cache"]
        assert cache["enabled"] and cache["redis_errors"] == 0, cache

        # preStop hooks, run as the kubelet runs them (in the container): each ends its server cleanly.
        for container, spec in ((nginx, nginx_spec), (pg, pg_spec)):
            hook = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
            container.exec_run([expand(a, {}) for a in hook])
            assert container.wait(timeout=30)["StatusCode"] == 0, container.logs(tail=10).decode(errors="replace")
        assert "database system is shut down" in pg.logs(tail=20).decode(errors="replace")
    finally:
        for container in reversed(started):
            container.remove(force=True, v=True)
        network.remove()


@needs_kubectl
def test_pods_of_the_learners_deployment_join_none_of_the_stacks_services_or_workloads(rendered):
    """Lab 06 applies the learner's Deployment beside the stack's (renamed `-yours`): its pods
    carry `app.kubernetes.io/name: users` and must not become the stack's users pods — not in its
    Services (traffic), not under its Deployment's selector (the HPA averages CPU over that)."""
    reference = REPO / "stack/shop/reference/deployment.yaml"
    if not reference.exists():
        pytest.skip("no lab 06 reference Deployment in this tree")
    learner = next(d for d in yaml.safe_load_all(reference.read_text()) if d and d["kind"] == "Deployment")
    labels = learner["spec"]["template"]["metadata"]["labels"]
    objects = rendered["lab06"]
    for service in by_kind(objects, "Service").values():
        assert not service["spec"]["selector"].items() <= labels.items(), service["metadata"]["name"]
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            assert not obj["spec"]["selector"]["matchLabels"].items() <= labels.items(), obj["metadata"]["name"]
    from scalelab.runtimes.kubernetes.runtime import _pods_of
    wanted = dict(pair.split("=") for pair in _pods_of("users").split(","))
    assert not wanted.items() <= labels.items(), "members() would list the learner's pod"
    users_pod = by_kind(objects, "Deployment")["users"]["spec"]["template"]["metadata"]["labels"]
    assert wanted.items() <= users_pod.items(), "members() lists the stack's users pods"


def test_kind_configs_kubeadm_patch_is_a_v1beta3_cluster_configuration_with_a_faster_hpa_sync():
    """kind 0.30 writes kubeadm v1beta3 (extraArgs: a map) for Kubernetes 1.23 and later, its
    official node image's 1.34 and the offline one's included."""
    from scalelab.runtimes.kind.cluster import OFFICIAL_NODE_IMAGE, OFFLINE_NODE_IMAGE
    assert re.match(r"kindest/node:v1\.34\.", OFFICIAL_NODE_IMAGE)
    assert re.match(r"scalelab/kind-node:v1\.34\.", OFFLINE_NODE_IMAGE)
    (patch,) = [yaml.safe_load(text) for text in KIND_CONFIG["kubeadmConfigPatches"]]
    assert (patch["apiVersion"], patch["kind"]) == ("kubeadm.k8s.io/v1beta3", "ClusterConfiguration")
    args = patch["controllerManager"]["extraArgs"]
    assert isinstance(args, dict) and all(isinstance(v, str) for v in args.values())
    assert args == {"horizontal-pod-autoscaler-sync-period": "5s"}


def test_kind_reads_the_clusters_kubeconfig_afresh_not_a_stale_copy(tmp_path, monkeypatch):
    """A cluster made anew (by another state dir, or after make kind-delete) listens on a new API
    port: the kubeconfig a state dir saved before must not be used (make kind-delete showed a
    urllib3 traceback, connection refused on the old port)."""
    from scalelab.runtimes.kind import KindRuntime
    from scalelab.runtimes.kind import cluster as kind_cluster
    rt = KindRuntime.__new__(KindRuntime)            # no tools, no engine: only the kubeconfig's path
    rt.cluster = kind_cluster.Cluster(tmp_path / "kind")
    rt.cluster.kubeconfig.parent.mkdir(parents=True)
    rt.cluster.kubeconfig.write_text("stale: the old cluster's port\n")
    rt._api = None
    written = []
    monkeypatch.setattr(kind_cluster.Cluster, "exists", lambda self: True)
    monkeypatch.setattr(kind_cluster.Cluster, "write_kubeconfig", lambda self: written.append(1))
    monkeypatch.setattr(KindRuntime.__mro__[1], "api", property(lambda self: "client"))
    assert rt.api == "client" and written == [1]
