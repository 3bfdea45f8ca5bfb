"""Prometheus as a local process (lab 07): ``prometheus-1``, scraping every shop member.

The binary comes from ``binaries.prometheus()`` (PROMETHEUS_BIN, PATH, /usr/bin/prometheus;
``stack/deploy/ensure-prometheus.sh`` installs Debian's package). Under
``<state>/local/prometheus/<member>/`` the driver writes:

* ``prometheus.yml``: scrape and rule evaluation every second (a lab wants answers in
  seconds, production uses 15-60 s), one job ``shop`` whose targets come from
* ``targets.json`` (``file_sd_configs``): one entry per member that serves ``/metrics``
  (users, orders, and the Celery workers on their own port), labelled
  ``instance=<member>`` and ``service=<service>``. It is rewritten whenever members change
  or one restarts (possibly on a new port); Prometheus notices the file change by itself.
* ``rules/``: the alert rules it loads (``rule_files``). The lab 07 check copies the
  learner's ``alert_rules.yaml`` there once ``promtool`` accepts it, then asks Prometheus
  to reload (``POST /-/reload``, on because of ``--web.enable-lifecycle``); at start, the
  workspace's file is loaded when promtool accepts it.
* ``data/``: the TSDB (deleted with the stack's data).

nginx, Postgres and Redis are not scraped: they need exporters, which this lab does not run.
"""

import json
import shutil
import signal
import subprocess
from pathlib import Path

import httpx

from scalelab import binaries
from scalelab.errors import ScalelabError
from scalelab.process import ProcessRecord
from scalelab.runtimes.common.prometheus import CONFIG, INTERVAL, RULES, SCRAPED


def home(rt, name: str) -> Path:
    return rt.home / "prometheus" / name


def preflight(rt) -> None:
    """Raise RuntimeUnavailable (one line naming the fix) before anything of the stack starts."""
    binaries.prometheus()


def targets(rt) -> list[dict]:
    return [{"targets": [f"127.0.0.1:{rt.procs[member].port}"],
             "labels": {"instance": member, "service": service}}
            for service in SCRAPED for member in rt.members(service)]


def write_targets(rt, name: str) -> None:
    path = home(rt, name)
    tmp = path / "targets.json.tmp"
    tmp.write_text(json.dumps(targets(rt), indent=1))
    tmp.replace(path / "targets.json")   # atomic: Prometheus never reads half a file


def record(rt, name: str, port: int) -> ProcessRecord:
    binary = binaries.prometheus()
    path = home(rt, name)
    (path / "rules").mkdir(parents=True, exist_ok=True)
    (path / "data").mkdir(exist_ok=True)
    (path / "prometheus.yml").write_text(CONFIG.format(interval=INTERVAL, rules=path / "rules",
                                                       targets=path / "targets.json"))
    write_targets(rt, name)
    # The rules it starts with: the learner's file when promtool accepts it (a restarted stack
    # keeps its alerts), else none (a reset workspace leaves no stale rules behind).
    learner = Path(rt.workspace) / RULES if rt.workspace else None
    if learner is not None and learner.exists() and check_rules(learner) is None:
        shutil.copy(learner, path / "rules" / RULES)
    else:
        (path / "rules" / RULES).unlink(missing_ok=True)
    argv = [str(binary.path), f"--config.file={path / 'prometheus.yml'}", f"--storage.tsdb.path={path / 'data'}",
            "--storage.tsdb.retention.time=1d", f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle", "--log.level=warn"]
    return ProcessRecord(name=name, argv=argv, log=str(rt.home / f"logs/{name}.log"), port=port,
                         stop_signal=signal.SIGTERM)


def ready(rt, rec: ProcessRecord) -> bool:
    return httpx.get(f"http://127.0.0.1:{rec.port}/-/ready", timeout=2).status_code == 200


def on_members_changed(rt, service: str) -> None:
    if service in SCRAPED:
        for name in rt.members("prometheus"):
            write_targets(rt, name)


def on_member_restarted(rt, member: str) -> None:
    on_members_changed(rt, member.rsplit("-", 1)[0])


# -- alert rules (lab 07) -----------------------------------------------------------------------
def promtool() -> Path | None:
    """promtool ships next to prometheus (Debian's package, the release tarball), else on PATH."""
    beside = binaries.prometheus().path.with_name("promtool")
    if beside.exists():
        return beside
    found = shutil.which("promtool")
    return Path(found) if found else None


def check_rules(path: Path) -> str | None:
    """``promtool check rules``: None when the file is valid, else promtool's complaint.
    Without promtool, None (Prometheus' own /api/v1/rules then reports load errors)."""
    tool = promtool()
    if tool is None:
        return None
    out = subprocess.run([str(tool), "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    if out.returncode == 0:
        return None
    return " ".join((out.stderr + out.stdout).split())[-600:]


def install_rules(rt, source: Path | None) -> None:
    """Load ``source`` as the stack's alert rules (None: no rules), then reload every Prometheus."""
    for name in rt.members("prometheus"):
        target = home(rt, name) / "rules" / RULES
        if source is None:
            target.unlink(missing_ok=True)
        else:
            shutil.copy(source, target)
        answer = httpx.post(f"http://127.0.0.1:{rt.procs[name].port}/-/reload", timeout=30)
        if answer.status_code != 200:
            raise ScalelabError(f"Prometheus refused to reload {name}: "
                                f"{answer.status_code} {answer.text.strip()[:400]}")
