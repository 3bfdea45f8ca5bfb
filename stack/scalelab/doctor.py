"""``scalelab doctor``: what this machine has for the lab, one line per fact."""

import os
import platform
import shutil
import subprocess
import sys

import psutil

from scalelab import binaries
from scalelab.errors import RuntimeUnavailable
from scalelab.ports import HOST, free_port

OK, WARN, FAIL = "ok", "warn", "FAIL"


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def rows(state_dir) -> list[tuple[str, str, str]]:
    """(status, what, detail) for everything the lab needs or can use."""
    found = [(OK if sys.version_info >= (3, 11) else FAIL, "python",
              f"{platform.python_version()} at {sys.executable}")]
    for name, finder in binaries.FINDERS.items():
        try:
            binary = finder()
            found.append((OK, name, f"{binary.version()} — {binary.path} ({binary.origin})"))
        except RuntimeUnavailable as exc:
            found.append((FAIL if name == "postgres" else WARN, name, str(exc)))
    found.append(_broker_row(state_dir))
    found.append(_kafka_row())
    found += _load_tool_rows()
    if os.geteuid() == 0:
        found.append((OK if shutil.which("setpriv") else FAIL, "root",
                      "running as root: Postgres runs as `nobody` via setpriv"
                      if shutil.which("setpriv")
                      else "running as root and setpriv is missing: apt-get install util-linux"))
    found += _docker_rows()
    from scalelab.runtimes.kubernetes.tools import tool as kube_tool
    for tool, argv in {"kind": ["kind", "version"],
                       "kubectl": ["kubectl", "version", "--client"]}.items():
        path = kube_tool(tool)   # make kind-offline's first, then the PATH's
        version = _version([path, *argv[1:]]) if path else None
        found.append((OK if version else WARN, tool, version or 'not found — needed only for runtime="kind"'))
    from scalelab.runtimes.kind.cluster import doctor_rows
    found += doctor_rows()   # node image, metrics-server image, cluster, metrics flowing (when kind is here)
    try:
        found.append((OK, "ports", f"{HOST} can bind free ports (e.g. {free_port()})"))
    except OSError as exc:
        found.append((FAIL, "ports", f"cannot bind {HOST}: {exc}"))
    memory = psutil.virtual_memory()
    found.append((OK if memory.available > 2 * 2**30 else WARN, "memory",
                  f"{memory.available / 2**30:.1f} GiB available of {memory.total / 2**30:.1f} GiB "
                  "(a lab needs ~1 GiB)"))
    cores = os.cpu_count() or 1
    found.append((OK if cores >= 2 else WARN, "cpu", f"{cores} cores (load tests share them with the servers)"))
    state_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(state_dir).free
    found.append((OK if free > 2**30 else WARN, "disk", f"{free / 2**30:.1f} GiB free at {state_dir}"))
    return found


def _kafka_row() -> tuple[str, str, str]:
    """The Kafka broker's jars (make tools-kafka) and the Java that runs them."""
    from scalelab import kafka_broker
    try:
        libs = kafka_broker.jars()
    except kafka_broker.KafkaUnavailable as exc:
        return WARN, "kafka", f"{exc} (make tools-kafka: lab 08's steps 10–12 run the broker)"
    java = _version([shutil.which("java") or "java", "-version"])
    return OK, "kafka", f"{kafka_broker.VERSION} — {libs} (java: {java or 'not found: Java 17+ runs it'})"


def _load_tool_rows() -> list[tuple[str, str, str]]:
    """Lab 01's real load tools, found where the notebook finds them."""
    from scalelab import loadtools
    found = []
    for tool, argv in {"ab": ["-V"], "vegeta": []}.items():   # (a go-installed vegeta prints no version)
        try:
            path = loadtools.find(tool)
        except RuntimeUnavailable as exc:
            found.append((WARN, tool, f"{exc} (lab 01's real-tools step)"))
            continue
        found.append((OK, tool, f"{(_version([path, *argv]) if argv else None) or 'present'} — {path}"))
    return found


def _docker_rows() -> list[tuple[str, str, str]]:
    """The client, the engine behind it, Compose and BuildKit, each asked the way the compose and
    kind runtimes ask it: a CLI alone is not an engine, and an engine without BuildKit builds none
    of the stack's images."""
    from scalelab.runtimes.common import engine, images
    version = _version(["docker", "--version"]) if shutil.which("docker") else None
    if version is None:
        return [(WARN, "docker", 'not found — needed only for runtime="compose" and "kind"')]
    found = [(OK, "docker", version)]
    try:
        server = engine.connect().version()
        found.append((OK, "docker engine",
                      f"{server.get('Version')} answers ({server.get('Os')}/{server.get('Arch')})"))
    except RuntimeUnavailable as exc:
        return [*found, (WARN, "docker engine", str(exc))]
    try:
        found.append((OK, "compose", " ".join(engine.compose_command())))
    except RuntimeUnavailable as exc:
        found.append((WARN, "compose", str(exc)))
    try:
        argv, env = images.build_command()
        found.append((OK, "buildkit", " ".join(argv[:3]) + (" (DOCKER_BUILDKIT=1)" if env else "")))
    except RuntimeUnavailable as exc:
        found.append((WARN, "buildkit", str(exc)))
    return found


def _broker_row(state_dir) -> tuple[str, str, str]:
    """Which broker carries the orders: lab 05's broker.yaml (the learner's), the reference for labs
    07 and 08; a bad setting in the learner's file is named in one line."""
    from scalelab import broker
    from scalelab.plans import plan_for
    workspace = state_dir / "workspace" / "lab05"
    try:
        lab5 = broker.settings_in(plan_for(5), workspace)
        later = broker.settings_in(plan_for(7), None)
    except Exception as exc:   # ScalelabError: the learner's file names a bad setting
        return WARN, "broker", f"lab 05: {exc}"
    chosen = "broker.yaml" if (workspace / "broker.yaml").exists() else "no broker.yaml yet: the lab's starting broker"
    return OK, "broker", f"lab 05: {lab5.label()} ({chosen}); labs 07, 08: {later.label()}"


def report(state_dir) -> int:
    results = rows(state_dir)
    width = max(len(what) for _, what, _ in results)
    for status, what, detail in results:
        print(f"[{status:>4}] {what:<{width}}  {detail}")
    failed = [what for status, what, _ in results if status == FAIL]
    if failed:
        print(f"\ndoctor: missing what the local runtime needs: {', '.join(failed)}")
        return 1
    print("\ndoctor: ready for runtime=\"local\"")
    return 0
