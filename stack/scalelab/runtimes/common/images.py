"""The stack's images (compose, kind and kubernetes run them): named by what they are built from, built when missing.

Every image is tagged with one hash of its build inputs (the Dockerfiles, the entrypoints,
the shop's source and requirements): a changed input means a new tag and a build — the
layer cache only makes that fast, it never decides what runs. Builds use BuildKit (build
secrets, cache mounts): ``docker buildx`` where present, else a docker CLI with BuildKit
built in (Debian's docker.io 20.10 at /usr/bin/docker).

    python -m scalelab.runtimes.common.images      # make images: build all, also tag :dev
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scalelab.errors import RuntimeUnavailable, ServiceFailed

STACK = Path(__file__).resolve().parents[3]           # stack/
DEPLOY = STACK / "deploy"
BASE_IMAGE = os.environ.get("PYTHON_IMAGE", "python:3.11-slim-bookworm")
NO_BASE = (f"base image {BASE_IMAGE} not available and not pullable — `make images-offline` builds it "
           "from Debian's packages (no registry needed)")


@dataclass(frozen=True)
class Image:
    name: str              # scalelab/<name>:<tag>
    context: Path
    dockerfile: Path
    inputs: tuple[Path, ...]


def _files(*roots: Path) -> tuple[Path, ...]:
    found = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        found += [p for p in paths if "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return tuple(found)


IMAGES = [
    Image("shop", STACK, DEPLOY / "shop/Dockerfile", _files(DEPLOY / "shop", STACK / "shop")),
    Image("postgres", DEPLOY / "postgres", DEPLOY / "postgres/Dockerfile", _files(DEPLOY / "postgres")),
    Image("valkey", DEPLOY / "valkey", DEPLOY / "valkey/Dockerfile", _files(DEPLOY / "valkey")),
    Image("nginx", DEPLOY / "nginx", DEPLOY / "nginx/Dockerfile",
          _files(DEPLOY / "nginx/Dockerfile", DEPLOY / "nginx/compose.conf")),
    Image("prometheus", DEPLOY / "prometheus", DEPLOY / "prometheus/Dockerfile", _files(DEPLOY / "prometheus")),
    Image("rabbitmq", DEPLOY / "rabbitmq", DEPLOY / "rabbitmq/Dockerfile", _files(DEPLOY / "rabbitmq")),
    Image("shop-node", STACK / "shop-node", DEPLOY / "shop-node/Dockerfile",   # lab 02's Express replica
          _files(DEPLOY / "shop-node", *(STACK / "shop-node" / name for name in
                                         ("package.json", "package-lock.json", "openapi.json", "src")))),
]


# Built only when a stack asks for it (lab 08's Kafka steps on compose): its jars come from
# `make tools-kafka` on the host, staged with the broker's module into a context of its own. Its
# tag hashes its own inputs (pom.xml names the jars), apart from the set's.
KAFKA = Image("kafka", STACK.parent / "build" / "kafka-image", DEPLOY / "kafka/Dockerfile",
              _files(DEPLOY / "kafka/Dockerfile", DEPLOY / "kafka/docker-entrypoint.py", DEPLOY / "kafka/pom.xml",
                     STACK / "scalelab/kafka_broker.py"))


def kafka_tag() -> str:
    return _digest([KAFKA])


def ensure_kafka(client, log: Path) -> str:
    """The kafka image for the current inputs, built when missing (RuntimeUnavailable in one line
    when the jars are not on this host yet); its tag."""
    from scalelab import kafka_broker
    tag_ = kafka_tag()
    name = reference(KAFKA, tag_)
    if _present(client, name):
        return tag_
    try:
        libs = kafka_broker.jars()
    except kafka_broker.KafkaUnavailable as exc:
        raise RuntimeUnavailable(f"no Kafka image and no jars to build it from: {exc} (make tools-kafka)") from None
    ensure_base(client)
    shutil.rmtree(KAFKA.context, ignore_errors=True)
    (KAFKA.context / "libs").mkdir(parents=True)
    for jar in libs.glob("*.jar"):
        shutil.copy2(jar, KAFKA.context / "libs" / jar.name)
    shutil.copy2(STACK / "scalelab/kafka_broker.py", KAFKA.context)
    shutil.copy2(DEPLOY / "kafka/docker-entrypoint.py", KAFKA.context)
    build(KAFKA, [name, "scalelab/kafka:dev"], log)
    return tag_


def tag() -> str:
    """One tag for the set: a hash of every image's build inputs and the base image's name."""
    return _digest(IMAGES)


def _digest(images: list[Image]) -> str:
    digest = hashlib.sha256(BASE_IMAGE.encode())
    for image in images:
        for path in image.inputs:
            digest.update(str(path.relative_to(STACK)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def reference(image: Image, tag_: str) -> str:
    return f"scalelab/{image.name}:{tag_}"


# -- building ---------------------------------------------------------------------------------
def _client_version(cli: str) -> int:
    out = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                         timeout=30)
    try:
        return int(out.stdout.strip().split(".")[0])
    except ValueError:
        return 0


def build_command() -> tuple[list[str], dict[str, str]]:
    """How to run a BuildKit build here: argv prefix and extra environment."""
    if shutil.which("docker") and subprocess.run(["docker", "buildx", "version"], capture_output=True,
                                                 timeout=30).returncode == 0:
        return ["docker", "buildx", "build", "--load"], {}
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        cli = Path(directory) / "docker"
        if cli.is_file() and os.access(cli, os.X_OK) and 0 < _client_version(str(cli)) < 23:
            return [str(cli), "build"], {"DOCKER_BUILDKIT": "1"}   # a CLI with BuildKit built in
    raise RuntimeUnavailable("no docker CLI here can build with BuildKit — install the buildx plugin "
                             "(or Debian's docker.io, whose CLI has it built in)")


def _pip_ca() -> str | None:
    """The CA bundle pip uses on this host (a TLS-intercepting proxy needs it inside the build)."""
    candidates = [os.environ.get("PIP_CERT")]
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.cert"], capture_output=True,
                             text=True, timeout=30)
        candidates.append(out.stdout.strip() if out.returncode == 0 else None)
    except (OSError, subprocess.TimeoutExpired):
        pass
    candidates += [os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def _pip_index_url() -> str | None:
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                             capture_output=True, text=True, timeout=30)
        url = out.stdout.strip() if out.returncode == 0 else None
    return url if url and url.startswith(("http://", "https://")) else None


def build(image: Image, tags: list[str], log: Path, timeout: float = 1200) -> None:
    prefix, extra_env = build_command()
    argv = [*prefix, "-f", str(image.dockerfile), "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}",
            "--label", f"org.scalelab.image={image.name}"]
    for name in tags:
        argv += ["-t", name]
    with tempfile.TemporaryDirectory(prefix="scalelab-build-") as secrets_dir:
        if ca := _pip_ca():
            argv += ["--secret", f"id=pip_ca,src={ca}"]
        if index := _pip_index_url():
            path = Path(secrets_dir) / "index-url"
            path.write_text(index)
            path.chmod(0o600)
            argv += ["--secret", f"id=pip_index_url,src={path}"]
        argv.append(str(image.context))
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write(f"\n$ {' '.join(argv)}\n")
            out.flush()
            try:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                      env={**os.environ, **extra_env}, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as exc:
                raise ServiceFailed(f"building {tags[0]} took over {timeout:.0f}s; see {log}") from exc
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise ServiceFailed(f"building {tags[0]} failed; {log} ends with:\n{tail}")


def _present(client, name: str) -> bool:
    import docker.errors
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_base(client) -> None:
    """The base image is here, or pullable (learners with internet); else name the offline fix."""
    import docker.errors
    if _present(client, BASE_IMAGE):
        return
    try:
        client.images.pull(BASE_IMAGE)
    except docker.errors.DockerException as exc:
        raise RuntimeUnavailable(NO_BASE) from exc


def ensure(client, log: Path, extra_tags: tuple[str, ...] = ()) -> str:
    """Build every image missing for the current inputs; return their tag."""
    tag_ = tag()
    missing = [image for image in IMAGES if not _present(client, reference(image, tag_))]
    if missing:
        ensure_base(client)
    for image in IMAGES:
        names = [reference(image, tag_), *(f"scalelab/{image.name}:{t}" for t in extra_tags)]
        if image in missing or extra_tags:
            build(image, names, log)
    return tag_


def main() -> int:
    from scalelab.runtimes.common.engine import connect
    log = Path(tempfile.gettempdir()) / "scalelab-images.log"
    try:
        client = connect()
        tag_ = ensure(client, log, extra_tags=("dev",))
    except (RuntimeUnavailable, ServiceFailed) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    for image in IMAGES:
        size = client.images.get(reference(image, tag_)).attrs["Size"] / 1e6
        print(f"images: scalelab/{image.name}:{tag_} (also :dev)  {size:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
