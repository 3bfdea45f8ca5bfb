"""nginx in the cluster in front of the user service (``nginx-1``): its configuration.

The same template and upstream block as on local and compose (``common/nginx.upstream_source``:
the learner's ``upstream.conf`` from the workspace in lab 02, the reference solution later),
rendered the way compose renders it (``compose/nginx.render``), with every line that holds
``{address}`` repeated once per ready users pod — its pod IP, port 8000. The driver does here
what an ingress controller does: it follows the pods and rewrites nginx's upstream.

A rendering is written into the nginx pod next to the running configuration, tested there with
``nginx -t`` (nginx's own complaint is what a refused file raises), moved over it and loaded
with ``nginx -s reload`` (SIGHUP: new workers get the new upstream, old ones finish their
requests). The ``nginx-conf`` ConfigMap keeps the last good rendering: a new nginx pod starts
from it (the driver renders again for it as soon as it is ready).

Without the driver (``kubectl apply -k``), the repository's ``components/nginx/nginx.conf``
runs instead: the reference upstream over the headless Service ``users-pods`` (nginx re-resolves it).
"""

import functools
import time
from collections.abc import Set as AbstractSet

import httpx

from scalelab.errors import ScalelabError, ServiceFailed
from scalelab.plans import plan_for
from scalelab.runtimes.common.nginx import (
    FRONTS,
    UPSTREAM,
    carries_traffic,
    explain,
    has_tls,
    install_tested,
    tls_source,
    upstream_source,
    wait_until_routed,
    weighted,
)
from scalelab.runtimes.compose.nginx import CONF_DIR, REDIRECT_PORT, TLS_PORT, render
from scalelab.runtimes.kubernetes.api import ready
from scalelab.waiting import wait_until

CONF = "/tmp/nginx.conf"           # the running configuration in the pod (its command copies it there)
MEMBER_PORT = 8000

# The nginx worker processes' pids, read from /proc in the pod (the image has no ps).
_WORKERS = ("import os\nfor pid in os.listdir('/proc'):\n    try:\n"
            "        if pid.isdigit() and b'worker process' in open(f'/proc/{pid}/cmdline', 'rb').read():\n"
            "            print(pid)\n    except OSError:\n        pass\n")
_WRITE = "import os, sys; open(sys.argv[1], 'w').write(sys.argv[2])"


def _upstream_services(rt) -> list[str]:
    """The services nginx balances over that this lab runs (users; lab 02's express too)."""
    plan = plan_for(rt.lab)
    return [service for service in UPSTREAM if plan.has(service)]


def _upstream_members(rt, without: AbstractSet[str]) -> dict[str, str]:
    """member -> pod IP:port of every ready pod behind nginx (users, express), but ``without``."""
    found = {}
    for service in _upstream_services(rt):
        pods = {p.metadata.name: p for p in rt._pods(service)}
        found.update({member: f"{pods[pod].status.pod_ip}:{MEMBER_PORT}"
                      for member, pod in rt._members_of(service).items()
                      if pod in pods and member not in without and ready(pods[pod]) and pods[pod].status.pod_ip})
    return found


def _exec(rt, member: str, argv: list[str]) -> tuple[int, str]:
    return rt.exec(member, argv, timeout=60)


def _test(rt, member: str, text: str) -> str | None:
    """``nginx -t`` of ``text`` inside the nginx pod: None when it passes, else nginx's complaint."""
    code, output = _exec(rt, member, ["python3", "-c", _WRITE, f"{CONF}.next", text])
    if code != 0:
        raise ServiceFailed(f"writing the nginx configuration into {member} failed: {output.strip()[-300:]}")
    code, output = _exec(rt, member, ["nginx", "-t", "-q", "-p", "/tmp/", "-c", f"{CONF}.next", "-e", "stderr"])
    if code == 0:
        return None
    return explain(output, text)


def configure(rt, strict: bool, without: AbstractSet[str] = frozenset()) -> None:
    """Render the upstream over the ready users pods (minus ``without``), test it in every nginx
    pod and load it there. strict=True raises ConfigRejected when nginx refuses the learner's
    upstream (the running nginx keeps its configuration); strict=False installs the 501 entry
    with nginx's complaint in its body instead (at start: the stack still comes up)."""
    upstream, origin = upstream_source(rt)
    routed = _upstream_members(rt, set(without))
    addresses = weighted(rt, {service: [address for member, address in routed.items() if rt._service(member) == service]
                              for service in _upstream_services(rt)})
    if upstream is not None and not addresses:
        upstream, origin = None, f"{FRONTS} has no ready replicas: scale it up"
    generation = f"{time.time_ns():x}"
    tls_values = _tls_values(rt)
    text = render(upstream, origin, addresses, generation)
    for member, pod in rt._members_of("nginx").items():
        if pod is None:
            continue
        text = install_tested(lambda upstream, reason, tls, tls_reason: render(upstream, reason, addresses,
                                                                               generation, tls, tls_reason,
                                                                               tls_values),
                              functools.partial(_test, rt, member),
                              functools.partial(_install, rt, member, generation),
                              upstream, origin, strict, tls_source(rt) if tls_values else (None, ""))
    rt.core.patch_namespaced_config_map(_config_map(rt), rt.namespace, {"data": {"nginx.conf": text}})
    for service in _upstream_services(rt):   # what follow_members compares with the ready pods
        rt.names.routed[service] = sorted(m for m in routed if rt._service(m) == service)
    rt._save()


def _tls_values(rt) -> dict[str, str] | None:
    """tls.conf's placeholders in the nginx pod (lab 02): the certificate from the ``nginx-tls``
    Secret the driver generated, HTTPS reached through a port-forward to the pod — the port
    the redirect names is that forward's, the one clients on this machine use."""
    if not has_tls(rt.lab):
        return None
    try:
        https_port = rt._forward("nginx-1", TLS_PORT)
    except ScalelabError:           # no nginx pod yet: HTTPS comes with the next configure (a reload)
        return None
    return {"tls_listen": str(TLS_PORT), "redirect_listen": str(REDIRECT_PORT),
            "https_port": str(https_port),
            "certificate": f"{CONF_DIR}/tls/edge.pem", "certificate_key": f"{CONF_DIR}/tls/edge.key"}


def _config_map(rt) -> str:
    """The ConfigMap the nginx pods start from (kustomize names it nginx-conf-<hash>)."""
    spec = rt.apps.read_namespaced_deployment("nginx", rt.namespace).spec.template.spec
    return next(v.config_map.name for v in spec.volumes if v.name == "conf")


def _install(rt, member: str, generation: str, _tested_text: str) -> None:
    """install_tested's last step in one nginx pod: the file ``_test`` left there (the text it
    tested) goes live — moved over the running one, reloaded; returns when nginx answers with the
    new generation and its old workers have finished their requests (bounded)."""
    old_workers = set(_exec(rt, member, ["python3", "-c", _WORKERS])[1].split())
    code, output = _exec(rt, member, ["sh", "-c", f"mv {CONF}.next {CONF} && nginx -s reload -p /tmp/ -c {CONF}"])
    if code != 0:
        raise ServiceFailed(f"nginx -s reload in {member} failed: {output.strip()[-300:]}")
    url, deadline = rt.member_url(member), time.monotonic() + 15   # both waits together: 15 s at most

    def loaded() -> bool:
        answer = httpx.get(f"{url}/nginx/health", timeout=2)
        return answer.status_code == 200 and answer.json().get("generation") == generation
    wait_until(loaded, 15, interval=0.05, transient=(httpx.HTTPError, ValueError),   # polling nginx's answer
               error=ServiceFailed,
               on_timeout=lambda _: f"{member} did not load its new configuration within 15 s:\n"
                                    f"{rt.logs(member, 10)}")
    wait_until(lambda: not old_workers & set(_exec(rt, member, ["python3", "-c", _WORKERS])[1].split()),
               deadline - time.monotonic(), interval=0.1)   # the old workers' requests finish (best effort)


def configured(rt) -> bool:
    """True when nginx proxies to the replicas (not the 501 'exercise not done' entry)."""
    found = rt.core.read_namespaced_config_map(_config_map(rt), rt.namespace).data or {}
    return f"proxy_pass http://{FRONTS};" in found.get("nginx.conf", "")


def members_changed(rt, service: str, without: AbstractSet[str] = frozenset(), restarted: str | None = None) -> None:
    """The pods behind nginx changed: its upstream follows. ``without``: members about to leave (out
    of rotation before they stop). ``restarted``: a member back, ready — wait until nginx
    routes to it again before a rolling restart moves on (bounded)."""
    if service not in UPSTREAM or not [p for p in rt._members_of("nginx").values() if p]:
        return
    configure(rt, strict=False, without=without)
    if restarted and configured(rt) and carries_traffic(rt, rt._service(restarted)):
        entry = rt.url(FRONTS)
        if not wait_until_routed(entry, restarted, 15.0):
            raise ServiceFailed(f"nginx does not route to {restarted} 15 s after it was ready")
