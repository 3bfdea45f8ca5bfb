"""Prometheus on the compose runtime (lab 07): ``prometheus-1``, a container of the
``prometheus`` service (image ``scalelab/prometheus``: Debian's package, as on local).

The driver renders its configuration into ``<state>/compose/prometheus/``, mounted read-only
over ``/etc/scalelab-prometheus`` (compose.lab.yaml), as on local (runtimes/common/prometheus.py):

* ``prometheus.yml``: scrape and evaluate every second, one job ``shop``, targets from
* ``targets.json`` (``file_sd_configs``): one entry per container that serves ``/metrics``
  (users, orders on 8000; the Celery workers on 9100), addressed by its container name on the
  Compose network (a restarted container keeps it; a stopped one does not resolve: ``up`` 0),
  labelled ``instance=<member>`` and ``service=<service>``. Rewritten when members change;
* ``rules/``: the alert rules it loads. A rules file is first staged in ``staging/`` and checked
  by ``promtool`` inside the container (the same 2.42 as the server), then moved into ``rules/``
  and Prometheus is asked to reload (``POST /-/reload``).

nginx, Postgres and Redis are not scraped: they need exporters, which this lab does not run.
Grafana is not run either (no image of it can be had here, and it is not in Debian): the
dashboard in stack/deploy/grafana is for a learner's own Grafana.
"""

import json
import shutil
from collections.abc import Set as AbstractSet
from pathlib import Path

import httpx

from scalelab.errors import ScalelabError
from scalelab.ports import free_port
from scalelab.runtimes.common.prometheus import CONFIG, INTERVAL, RULES, SCRAPED

MOUNT = "/etc/scalelab-prometheus"        # where the container sees conf_dir()
METRICS_PORTS = {"users": 8000, "orders": 8000, "worker": 9100}   # inside the containers


def conf_dir(rt) -> Path:
    path = rt.home / "prometheus"
    (path / "rules").mkdir(parents=True, exist_ok=True)
    (path / "staging").mkdir(exist_ok=True)
    return path


def targets(rt, without: AbstractSet[str] = frozenset()) -> list[dict]:
    return [{"targets": [f"{container.name}:{METRICS_PORTS[service]}"],
             "labels": {"instance": member, "service": service}}
            for service in SCRAPED for container in rt._containers(service)
            if (member := rt._member_name(container)) and member not in without]


def write_targets(rt, without: AbstractSet[str] = frozenset()) -> None:
    path = conf_dir(rt)
    tmp = path / "targets.json.tmp"
    tmp.write_text(json.dumps(targets(rt, without), indent=1))
    tmp.replace(path / "targets.json")   # atomic: Prometheus never reads half a file


def members_changed(rt, service: str, without: AbstractSet[str] = frozenset()) -> None:
    """Members of a scraped service were added, or are about to be removed (``without``)."""
    if service in SCRAPED and rt._containers("prometheus"):
        write_targets(rt, without)


def ensure(rt, compose, replicas: int) -> bool:
    """``prometheus-1`` running and ready, its configuration rendered first; the workspace's
    alert rules loaded when promtool accepts them (a restarted stack keeps its alerts)."""
    if replicas != 1:
        raise ScalelabError("the lab runs one Prometheus")
    containers = rt._containers("prometheus")
    path = conf_dir(rt)
    (path / "prometheus.yml").write_text(CONFIG.format(interval=INTERVAL, rules=f"{MOUNT}/rules",
                                                       targets=f"{MOUNT}/targets.json"))
    write_targets(rt)
    if containers and containers[0].status == "running":
        return False
    if containers:
        if containers[0].status == "paused":
            containers[0].unpause()
        else:
            containers[0].start()
    else:
        (path / "rules" / RULES).unlink(missing_ok=True)   # no stale rules from an earlier stack
        compose.run("up", "-d", "--no-deps", "--no-recreate", "--scale", "prometheus=1", "prometheus",
                    env={"PROMETHEUS_PORT": str(free_port())})
    rt._wait_ready("prometheus-1")
    learner = Path(rt.workspace) / RULES if rt.workspace else None
    if learner is not None and learner.exists() and check_rules(rt, learner) is None:
        install_rules(rt, learner)
    return True


def ready(rt, member: str) -> bool:
    return httpx.get(f"{rt.member_url(member)}/-/ready", timeout=2).status_code == 200


# -- alert rules (lab 07) -----------------------------------------------------------------------
def check_rules(rt, source: Path) -> str | None:
    """``promtool check rules`` inside the Prometheus container: None when the file is valid,
    else promtool's complaint."""
    staged = conf_dir(rt) / "staging" / RULES
    shutil.copy(source, staged)
    staged.chmod(0o644)
    code, out = rt._container("prometheus-1").exec_run(["promtool", "check", "rules", f"{MOUNT}/staging/{RULES}"])
    if code == 0:
        return None
    return " ".join(out.decode(errors="replace").replace(f"{MOUNT}/staging/", "").split())[-600:]


def install_rules(rt, source: Path | None) -> None:
    """Load ``source`` as the stack's alert rules (None: no rules), then reload Prometheus."""
    target = conf_dir(rt) / "rules" / RULES
    if source is None:
        target.unlink(missing_ok=True)
    else:
        tmp = target.with_suffix(".tmp")          # not *.yaml: never loaded half-written
        shutil.copy(source, tmp)
        tmp.chmod(0o644)
        tmp.replace(target)
    for member in rt.members("prometheus"):
        answer = httpx.post(f"{rt.member_url(member)}/-/reload", timeout=30)
        if answer.status_code != 200:
            raise ScalelabError(f"Prometheus refused to reload {member}: {answer.status_code} "
                                f"{answer.text.strip()[:400]}")
