"""What the ``kubernetes`` runtime applies: a kustomization it writes in the state directory.

    directory = write_kustomization(home, plan, namespace, tag, workspace)
    objects = render(directory)       # kubectl kustomize: a list of dicts, Secret included

The generated ``kustomization.yaml`` points at the repository's overlay for the lab
(``stack/deploy/k8s/overlays/labNN``) and adds what only the running stack knows — the
``kustomize edit set image`` / ``create secret`` equivalents, written as a file:

* ``namespace``: the stack's own (``scalelab-<hash of the state dir>``);
* ``images``: the content-addressed tags compose_images built (never ``:latest``);
* ``secretGenerator`` ``scalelab-secrets`` from a 0600 env file (the stack's passwords and
  JWT key: the repository has none);
* ``configMapGenerator``: the plan's exercises (and where the pods find their member name)
  merged into ``shop-settings``, and the learner's workspace files as the ``workspace``
  ConfigMap the shop's pods mount.

The repository's files are never edited at run time.
"""

import json
import os
from pathlib import Path

import yaml

from scalelab import tls
from scalelab.paths import REPO
from scalelab.plans import Plan
from scalelab.runtimes.common import replication
from scalelab.runtimes.common.images import IMAGES, KAFKA, kafka_tag
from scalelab.runtimes.common.nginx import has_tls
from scalelab.runtimes.compose import env as compose_env
from scalelab.runtimes.kubernetes import images, kafka
from scalelab.runtimes.kubernetes.members import INSTANCE_FILE
from scalelab.runtimes.kubernetes.tools import kustomize

K8S = REPO / "stack" / "deploy" / "k8s"
# The NodePort of each entry Service (stack/deploy/k8s): nginx fronts the user service where a
# lab runs it, else the user service's own Service has 30080; the order service has 30081, and
# so has lab 06's `live` Service, whose selector is Kubernetes' blue-green switch (that lab runs
# no order service).
NODE_PORTS = {"nginx": 30080, "users": 30080, "orders": 30081, "live": 30081}

SECRET_KEYS = {"postgres": "postgres-password", "shop": "shop-db-password", "redis": "redis-password",
               "jwt": "jwt-secret", "rabbitmq": "rabbitmq-password"}
WORKSPACE_SUFFIXES = (".py", ".conf", ".yaml", ".json")


def overlay(lab: int) -> Path:
    path = K8S / "overlays" / f"lab{lab:02d}"
    if not (path / "kustomization.yaml").exists():
        from scalelab.errors import RuntimeUnavailable
        have = ", ".join(sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir()))
        raise RuntimeUnavailable(f"lab {lab} has no Kubernetes overlay (stack/deploy/k8s/overlays has {have}) "
                                 "— use runtime=\"local\"")
    return path


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_kustomization(home: Path, plan: Plan, namespace: str, tag: str, workspace: Path | None,
                        registry: str | None = None) -> Path:
    """The stack's kustomization in ``home/kustomize``; ``registry``: the images are pulled from
    there (``REGISTRY/scalelab/NAME:TAG``), else by their plain names (loaded into the nodes)."""
    directory = home / "kustomize"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    passwords = compose_env.passwords(home)          # created once per state dir, 0600
    secrets = {key: passwords[name] for name, key in SECRET_KEYS.items()}
    secrets["replication-password"] = replication.password_in(home / "standby")   # lab 04's standby
    _private_write(directory / "secrets.env", "".join(f"{key}={value}\n" for key, value in secrets.items()))
    # The learner's files, copied below the kustomization (kustomize reads nothing outside it).
    files_dir = directory / "workspace"
    files_dir.mkdir(exist_ok=True)
    for old in files_dir.iterdir():
        old.unlink()
    files = []
    if workspace and workspace.is_dir():
        for source in sorted(workspace.iterdir()):
            if source.is_file() and source.suffix in WORKSPACE_SUFFIXES:
                (files_dir / source.name).write_bytes(source.read_bytes())
                files.append(f"workspace/{source.name}")
    # The plan's settings (the overlay has them too, for `kubectl apply -k`: a test checks they
    # agree); the shop's pods wait for the member name the driver gives them (members.tell).
    secrets_generated: list[dict] = [{"name": "scalelab-secrets", "envs": ["secrets.env"],
                                      "options": {"disableNameSuffixHash": True}}]
    generators = [{"name": "shop-settings", "behavior": "merge", "options": {"disableNameSuffixHash": True},
                   "literals": [f"SHOP_EXERCISES={json.dumps(list(plan.exercises))}",
                                f"SHOP_INSTANCE_FILE={INSTANCE_FILE}",
                                *(f"{key}={value}" for key, value in plan.settings.items())]}]
    if plan.has("prometheus"):   # lab 07: service discovery in the stack's own namespace
        (directory / "prometheus.yml").write_text(prometheus_config(namespace))
        generators.append({"name": "prometheus-config", "behavior": "replace", "files": ["prometheus.yml"],
                           "options": {"disableNameSuffixHash": True}})
    if plan.has("redis"):   # lab 05's broker.yaml: Redis' append-only settings, read when it starts
        conf = compose_env.valkey_conf(home, plan, workspace)
        (directory / "broker.conf").write_text(conf.read_text())
        generators.append({"name": "valkey-broker", "files": ["broker.conf"],
                           "options": {"disableNameSuffixHash": True}})
    if plan.has("nginx") and has_tls(plan.lab):   # lab 02: nginx's certificate, the stack's CA
        edge = tls.ensure(home / "tls")
        (directory / "tls").mkdir(mode=0o700, exist_ok=True)
        for source in (edge.certificate_file, edge.key_file):
            _private_write(directory / "tls" / source.name, source.read_text())
        secrets_generated.append({"name": "nginx-tls", "files": [f"tls/{edge.certificate_file.name}",
                                                                 f"tls/{edge.key_file.name}"],
                                  "options": {"disableNameSuffixHash": True}})
    if plan.has("relay"):   # lab 08: the address Kafka advertises to the driver (kafka.py)
        generators.append(kafka.settings(home))
    if files:   # a plain name, updated in place: a pod started later (restart, kill) mounts the current files
        generators.append({"name": "workspace", "files": files, "options": {"disableNameSuffixHash": True}})
    image_tags = [(image.name, tag) for image in IMAGES]
    if plan.has("prometheus"):   # lab 07: Prometheus with Kubernetes service discovery (kubernetes/images.py)
        image_tags.append((images.NAME, images.tag()))
    if plan.has("relay"):   # lab 08's broker: built and loaded only when the notebook starts it
        image_tags.append((KAFKA.name, kafka_tag()))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        # what the driver generates here is the stack's too (down() and pruning find it by this)
        "labels": [{"pairs": {"app.kubernetes.io/part-of": "scalelab"}}],
        "resources": [os.path.relpath(overlay(plan.lab), directory)],
        "images": [{"name": f"scalelab/{name}", "newTag": tag_,
                    **({"newName": f"{registry}/scalelab/{name}"} if registry else {})} for name, tag_ in image_tags],
        # Plain names (no hash suffix): lab 06's Deployment exercise refers to them, and the
        # workspace ConfigMap is updated in place (as on local, a restarted member runs the
        # files as they are now; a running one keeps what it loaded).
        "secretGenerator": secrets_generated,
        "configMapGenerator": generators,
    }
    header = ("# Written by scalelab.runtimes.kubernetes.render for this stack; rendered with `kubectl kustomize`.\n"
              "# secrets.env (0600) holds the stack's passwords: never commit or print it.\n")
    (directory / "kustomization.yaml").write_text(header + yaml.safe_dump(kustomization, sort_keys=False))
    return directory


def prometheus_config(namespace: str) -> str:
    """components/prometheus/prometheus.yml, watching ``namespace`` instead of ``scalelab``."""
    text = (K8S / "components" / "prometheus" / "prometheus.yml").read_text()
    watched = "          names: [scalelab]"
    if watched not in text:
        from scalelab.errors import ServiceFailed
        raise ServiceFailed("components/prometheus/prometheus.yml no longer names its namespace as "
                            f"`{watched.strip()}`: update render.prometheus_config")
    return text.replace(watched, f"          names: [{namespace}]")


def render(directory: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(kustomize(directory)) if doc]


def render_repo(path: Path) -> list[dict]:
    """A directory of the repository (an overlay, metrics-server) rendered as it is."""
    return [doc for doc in yaml.safe_load_all(kustomize(path)) if doc]
