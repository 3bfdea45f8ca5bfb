"""The images only the Kubernetes runtimes run: ``scalelab/prometheus-k8s`` (lab 07).

Lab 07's Prometheus finds its targets through Kubernetes service discovery, which Debian's
package (what local and compose run) is built without. Its binaries are built from
Prometheus' Go module by ``stack/deploy/kind-offline/build-prometheus.sh`` (``make
prometheus-k8s``, also part of ``make kind-offline``) into the kind-offline cache; this module
puts them beside ``stack/deploy/prometheus-k8s/Dockerfile`` in a build context of their own
and builds the image, tagged by a hash of the Dockerfile and the binaries' version.
"""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from scalelab.errors import RuntimeUnavailable
from scalelab.runtimes.common import images as compose_images
from scalelab.runtimes.common.images import DEPLOY, Image
from scalelab.runtimes.kubernetes.tools import kind_cache

PROMETHEUS_ENV = DEPLOY / "kind-offline" / "prometheus.env"
DOCKERFILE = DEPLOY / "prometheus-k8s" / "Dockerfile"
PROGRAMS = ("prometheus", "promtool")
NAME = "prometheus-k8s"


def prometheus_version() -> str:
    """The Prometheus Go module version build-prometheus.sh builds (prometheus.env)."""
    for line in PROMETHEUS_ENV.read_text().splitlines():
        if line.startswith("PROMETHEUS_MODULE_VERSION="):
            return line.split("=", 1)[1].strip()
    raise RuntimeUnavailable(f"{PROMETHEUS_ENV} names no PROMETHEUS_MODULE_VERSION")


def _built_binaries() -> Path:
    """The kind-offline cache's bin folder once both programs of the pinned version are there,
    else one line saying how to build them."""
    bin_dir, version = kind_cache() / "bin", prometheus_version()
    missing = [p for p in PROGRAMS if not (bin_dir / p).is_file()]
    found = ""
    if not missing:
        out = subprocess.run([str(bin_dir / "prometheus"), "--version"], capture_output=True, text=True, timeout=30)
        found = out.stdout.split("version ", 1)[-1].split()[0] if "version " in out.stdout else ""
    if missing or found != version:
        what = (f"{' and '.join(missing)} not in {bin_dir}" if missing
                else f"{bin_dir}/prometheus is {found or 'unknown'}")
        raise RuntimeUnavailable(
            f"lab 07 on Kubernetes needs Prometheus {version} with Kubernetes service discovery ({what}) — "
            "`make prometheus-k8s` builds it from its Go module (Go and the module proxy; about 15 minutes cold)")
    return bin_dir


def tag() -> str:
    digest = hashlib.sha256(compose_images.BASE_IMAGE.encode())
    digest.update(DOCKERFILE.read_bytes() + prometheus_version().encode())
    return digest.hexdigest()[:12]


def prometheus(client, home: Path, log: Path) -> str:
    """``scalelab/prometheus-k8s:<tag>``, built when missing; its reference."""
    reference = f"scalelab/{NAME}:{tag()}"
    if compose_images._present(client, reference):
        return reference
    bin_dir = _built_binaries()
    context = home / "images" / NAME
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copy(DOCKERFILE, context / "Dockerfile")
    for program in PROGRAMS:
        try:
            os.link(bin_dir / program, context / program)       # 100 MB each: no copy where a link will do
        except OSError:
            shutil.copy2(bin_dir / program, context / program)
    compose_images.ensure_base(client)
    try:
        compose_images.build(Image(NAME, context, context / "Dockerfile", ()), [reference], log)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return reference
