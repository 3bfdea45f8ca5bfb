"""Prometheus in the cluster (lab 07): ``prometheus-1``, the pod of components/prometheus.

It finds its targets itself, through Kubernetes service discovery (``kubernetes_sd_configs``,
role pod, in the stack's namespace, with a Role of its own): every pod annotated
``scalelab.io/metrics-port``, labelled ``instance`` = the member name the driver gave the pod
and ``service`` = its app name. Nothing to rewrite when pods come and go.

The alert rules are the ``alert-rules`` ConfigMap, mounted at
``/etc/scalelab-prometheus/rules``. A rules file is first checked by ``promtool`` inside the pod
(the same Prometheus 3 build as the server, runtimes/kubernetes/images.py) on a copy in its /tmp,
then written into the ConfigMap; the pod is touched (an annotation) so the kubelet refreshes the
mounted file at once instead of at its next periodic sync, and once the pod has it Prometheus is
asked to reload (``POST /-/reload``).
"""

import hashlib
from pathlib import Path

import httpx

from scalelab.errors import ScalelabError, ServiceFailed
from scalelab.runtimes.common.prometheus import RULES
from scalelab.waiting import wait_until

MEMBER = "prometheus-1"
CONFIG_MAP = "alert-rules"
RULES_DIR = "/etc/scalelab-prometheus/rules"
STAGED = f"/tmp/{RULES}"
_WRITE = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
EMPTY = "groups: []\n"


def check_rules(rt, source: Path) -> str | None:
    """``promtool check rules`` inside the Prometheus pod: None when the file is valid, else
    promtool's complaint."""
    code, out = rt.exec(MEMBER, ["python3", "-c", _WRITE, STAGED, source.read_text()])
    if code != 0:
        raise ServiceFailed(f"copying {source.name} into {MEMBER} failed: {out.strip()[-300:]}")
    code, out = rt.exec(MEMBER, ["promtool", "check", "rules", STAGED])
    if code == 0:
        return None
    return " ".join(out.replace("/tmp/", "").split())[-600:]


def install_rules(rt, source: Path | None) -> None:
    """Load ``source`` as the stack's alert rules (None: no rules), then reload Prometheus."""
    text = source.read_text() if source is not None else EMPTY
    rt.core.patch_namespaced_config_map(CONFIG_MAP, rt.namespace, {"data": {RULES: text}})
    digest = hashlib.sha256(text.encode()).hexdigest()
    for member, pod in rt._members_of("prometheus").items():
        if pod is None:
            continue
        # A change to the pod makes the kubelet sync it now, the ConfigMap volume included.
        rt.core.patch_namespaced_pod(pod, rt.namespace,
                                     {"metadata": {"annotations": {"scalelab.io/rules": digest[:16]}}})
        _wait_mounted(rt, member, text)
        answer = httpx.post(f"{rt.member_url(member)}/-/reload", timeout=30)
        if answer.status_code != 200:
            raise ScalelabError(f"Prometheus refused to reload {member}: "
                                f"{answer.status_code} {answer.text.strip()[:400]}")


def _wait_mounted(rt, member: str, text: str, timeout: float = 90) -> None:
    wait_until(lambda: rt.exec(member, ["cat", f"{RULES_DIR}/{RULES}"]) == (0, text), timeout,
               interval=0.5, error=ServiceFailed,   # polling the mounted file (bounded)
               on_timeout=f"{member} still does not see the new alert rules {timeout:.0f}s after the "
                          "ConfigMap changed (the kubelet refreshes ConfigMap volumes)")


def ensure(rt) -> None:
    """At up(): the workspace's alert rules loaded when promtool accepts them (a restarted stack
    keeps its alerts); otherwise no rules."""
    learner = Path(rt.workspace) / RULES if rt.workspace else None
    if learner is not None and learner.exists() and check_rules(rt, learner) is None:
        install_rules(rt, learner)
