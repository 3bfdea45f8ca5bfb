"""What a kind cluster changes on the host, recorded before it is created and put back after it
is deleted.

kind's nodes are privileged containers, and kernel settings that are not namespaced belong to
the host: the kubelet in each node sets its defaults (``vm.overcommit_memory=1``,
``kernel.panic=10``, ``kernel.panic_on_oops=1``), systemd (PID 1 of each node) raises
``fs.file-max`` and ``fs.nr_open`` at boot, and Docker turns IPv6 forwarding on for kind's
network. Measured on this project's machines by diffing /proc/sys before and after
``kind create cluster``; ``HOST_SYSCTLS`` is that list, plus the kubelet's other defaults.

    record("scalelab")             # before kind create cluster (the first record is kept)
    restore("scalelab")            # after kind delete cluster: {setting: (now, restored to)}
"""

import json
import os
from pathlib import Path

HOST_SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",     # kubelet
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",                               # kubelet
    "fs/file-max", "fs/nr_open",                                                           # systemd
    "net/ipv6/conf/all/forwarding", "net/ipv6/conf/default/forwarding",                    # Docker
)
PROC_SYS = Path("/proc/sys")


def _record_file(cluster: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scalelab" / "kind-host"
    return base / f"{cluster}.sysctl.json"


def read(names=HOST_SYSCTLS) -> dict[str, str]:
    values = {}
    for name in names:
        try:
            values[name] = (PROC_SYS / name).read_text().strip()
        except OSError:
            continue            # not on this kernel
    return values


def record(cluster: str) -> None:
    """The host's values now, unless a record of this cluster's host exists (a cluster deleted
    without restore, then created again, must not record the values it changed)."""
    path = _record_file(cluster)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(read(), indent=1))


def recorded(cluster: str) -> dict[str, str]:
    path = _record_file(cluster)
    return json.loads(path.read_text()) if path.exists() else {}


def restore(cluster: str) -> dict[str, tuple[str, str]]:
    """Put back every recorded value the cluster changed; forget the record. Returns what was
    changed as {name: (value found, value restored)}. Raises PermissionError (not root)."""
    before = recorded(cluster)
    changed = {name: (now, before[name]) for name, now in read(before).items() if now != before[name]}
    for name, (_, value) in changed.items():
        (PROC_SYS / name).write_text(value + "\n")
    _record_file(cluster).unlink(missing_ok=True)
    return changed
