"""nginx as a local process in front of the user service: ``nginx-1``, the public entry point.

The config is rendered from ``stack/deploy/nginx/nginx.conf.template`` around an upstream
block (``runtimes/common/nginx.py``: the learner's ``upstream.conf``, or the reference; the
501 entry until that exercise is written or when nginx rejects it at start). When the members
change (``scale``) the file is re-rendered, tested with ``nginx -t`` and loaded with
``nginx -s reload``: new workers get the new upstream, old workers finish the requests they
hold, no connection is refused. nginx always runs as ``nginx -p <dir> -c nginx.conf`` with its
pid, temp files and logs under the state dir.
"""

import grp
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from scalelab import binaries, tls
from scalelab.errors import ServiceFailed
from scalelab.paths import IS_ROOT, nobody_scratch
from scalelab.ports import free_port
from scalelab.process import ProcessRecord
from scalelab.runtimes.common.nginx import (
    FRONTS,
    TEMPLATE,
    UPSTREAM,
    TlsEntry,
    _not_configured,
    carries_traffic,
    expand,
    has_tls,
    install_tested,
    no_tls,
    tls_source,
    upstream_source,
    wait_until_routed,
    weighted,
    with_tls,
)


# -- where things live --------------------------------------------------------------------
def home(rt, name: str) -> Path:
    return rt.home / "nginx" / name


def _temp_dir(path: Path) -> Path:
    if not IS_ROOT:
        return path / "temp"
    # As root, nginx's workers run as nobody: their temp files go where nobody can reach.
    temp = nobody_scratch(path.parent.parent, f"nginx-{path.name}")
    temp.mkdir(mode=0o755, parents=True, exist_ok=True)
    temp.parent.chmod(0o755)
    return temp


def _user_directive() -> str:
    if not IS_ROOT:
        return "# (not root: the worker runs as the current user)"
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};   # root starts, workers drop to nobody"


def _command(rt, name: str, *args: str) -> list[str]:
    return [str(binaries.nginx().path), "-p", f"{home(rt, name)}/", "-c", "nginx.conf", "-e", "stderr", *args]


def _addresses(rt) -> list[str]:
    return weighted(rt, {service: [f"127.0.0.1:{rt.procs[member].port}" for member in rt.members(service)]
                         for service in UPSTREAM})


def _tls_values(rt, rec: ProcessRecord) -> dict[str, str] | None:
    """tls.conf's placeholders, when the lab has HTTPS (its ports were picked with the record)."""
    if "tls_port" not in rec.meta:
        return None
    edge = tls.ensure(rt.home / "tls")
    return {"tls_listen": f"127.0.0.1:{rec.meta['tls_port']}",
            "redirect_listen": f"127.0.0.1:{rec.meta['redirect_port']}", "https_port": str(rec.meta["tls_port"]),
            "certificate": str(edge.certificate_file), "certificate_key": str(edge.key_file)}


def tls_entry(rt, rec: ProcessRecord) -> TlsEntry:
    if "tls_port" not in rec.meta:
        raise no_tls(rt.lab)
    return TlsEntry(f"https://127.0.0.1:{rec.meta['tls_port']}", f"http://127.0.0.1:{rec.meta['redirect_port']}",
                    rt.home / "tls" / "ca.pem", rt.home / "tls" / "edge.pem")


def render(rt, rec: ProcessRecord, upstream: str | None, reason: str, generation: str, tls_text: str | None = None,
           tls_reason: str = "no HTTPS in this lab") -> str:
    """The whole nginx.conf: the template filled in, around ``upstream`` (or the 501 entry)."""
    path = home(rt, rec.name)
    values = {
        "home": str(path),
        "temp": str(_temp_dir(path)),
        "user": _user_directive(),
        "port": str(rec.port),
        "generation": generation,
        "upstream": expand(upstream, _addresses(rt)) if upstream is not None else f"    # not configured: {reason}",
        "entry": f"            proxy_pass http://{FRONTS};" if upstream is not None else _not_configured(reason),
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return with_tls(text, tls_text, tls_reason, _tls_values(rt, rec) or {})


def _test(rt, name: str, candidate: Path) -> str | None:
    """Run ``nginx -t`` on ``candidate``; None when it passes, else nginx's complaint."""
    argv = _command(rt, name, "-t", "-q")
    argv[argv.index("nginx.conf")] = candidate.name
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if out.returncode == 0:
        return None
    lines = [line for line in (out.stderr or out.stdout).splitlines() if "[emerg]" in line or "[crit]" in line]
    message = (lines[0] if lines else (out.stderr or out.stdout).strip()).split("] ", 1)[-1]
    message = re.sub(r"^\d+#\d+: ", "", message)  # nginx's "pid#tid: " prefix
    # nginx names a line of the rendered file: show that line, the learner wrote it.
    if m := re.search(r" in (\S+):(\d+)$", message):
        rendered = Path(m[1]).read_text().splitlines()
        offending = rendered[int(m[2]) - 1].strip() if int(m[2]) <= len(rendered) else ""
        message = message[:m.start()] + (f" — in the line `{offending}`" if offending else "")
    return message


def write_config(rt, rec: ProcessRecord, strict: bool) -> None:
    """Render, test and install ``nginx.conf`` for ``rec`` (``install_tested``: strict=True on
    reload, the running nginx keeps its old config; strict=False at start, the 501 entry)."""
    path = home(rt, rec.name)
    path.mkdir(parents=True, exist_ok=True)
    upstream, origin = upstream_source(rt)
    if upstream is not None and not _addresses(rt):
        upstream, origin = None, f"{FRONTS} has no replicas: scale it up"
    generation = f"{time.time_ns():x}"
    candidate = path / "nginx.conf.next"

    def test(text: str) -> str | None:
        candidate.write_text(text)
        return _test(rt, rec.name, candidate)

    def install(text: str) -> None:
        candidate.replace(path / "nginx.conf")       # the file test() wrote last
        (path / "generation").write_text(generation)

    install_tested(lambda upstream, reason, tls_text, tls_reason: render(rt, rec, upstream, reason, generation,
                                                                         tls_text, tls_reason),
                   test, install, upstream, origin, strict, tls_source(rt) if "tls_port" in rec.meta else (None, ""))


# -- the process recipe (the interface local.py uses) -----------------------------------------
def record(rt, name: str, port: int) -> ProcessRecord:
    # SIGQUIT is nginx's graceful shutdown: finish the requests in flight, then exit.
    rec = ProcessRecord(name=name, argv=_command(rt, name), log=str(rt.home / f"logs/{name}.log"),
                        port=port, stop_signal=signal.SIGQUIT)
    if has_tls(rt.lab):                                   # lab 02: HTTPS, and a plain port that redirects
        before = getattr(rt.procs.get(name), "meta", {})  # a restarted nginx keeps its ports, like its entry
        rec.meta.update({key: before.get(key) or free_port() for key in ("tls_port", "redirect_port")})
    write_config(rt, rec, strict=False)
    return rec


def ready(rt, rec: ProcessRecord) -> bool:
    """nginx answers, with the configuration rendered last (not an older one)."""
    expected = (home(rt, rec.name) / "generation").read_text().strip()
    answer = httpx.get(f"http://127.0.0.1:{rec.port}/nginx/health", timeout=2)
    return answer.status_code == 200 and answer.json().get("generation") == expected


def configured(rt, rec: ProcessRecord) -> bool:
    """True when nginx proxies to the replicas (not the 501 'exercise not done' entry)."""
    return f"proxy_pass http://{FRONTS};" in (home(rt, rec.name) / "nginx.conf").read_text()


def reload(rt, rec: ProcessRecord) -> None:
    """Re-render from the current upstream file and members, then ``nginx -s reload``."""
    if not rec.alive():
        raise ServiceFailed(f"{rec.name} is not running: start it with stack.start({rec.name!r})")
    write_config(rt, rec, strict=True)
    master = rec.process()
    assert master is not None   # alive() above
    old_workers = master.children()
    out = subprocess.run(_command(rt, rec.name, "-s", "reload"), capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise ServiceFailed(f"nginx -s reload failed: {(out.stderr or out.stdout).strip()[-400:]}")
    rec.wait_ready(lambda: ready(rt, rec), timeout=15, what="serving the new configuration")
    # The master lets old workers accept for a moment after the new ones start: the reload
    # is complete when they have finished their requests and exited (bounded).
    psutil.wait_procs(old_workers, timeout=10)


def on_members_changed(rt, service: str) -> None:
    """A service behind nginx gained or lost members: reload with the new upstream list."""
    if service not in UPSTREAM:
        return
    for name in rt.members("nginx"):
        if rt.procs[name].alive():
            reload(rt, rt.procs[name])


def on_member_restarted(rt, member: str, timeout: float = 15.0) -> None:
    """After a member of the fronted service restarted: make sure nginx knows its address,
    then wait (bounded) until nginx sends it requests again — a rolling restart goes on
    to the next member only when this one is back in rotation."""
    service = member.rsplit("-", 1)[0]
    if service not in UPSTREAM or not carries_traffic(rt, service):
        return
    address = f"127.0.0.1:{rt.procs[member].port}"
    for name in rt.members("nginx"):
        rec = rt.procs[name]
        if not rec.alive():
            continue
        if address not in (home(rt, name) / "nginx.conf").read_text():
            reload(rt, rec)  # the member came back on another port
        if not configured(rt, rec):
            continue
        wait_until_routed(f"http://127.0.0.1:{rec.port}", member, timeout)
