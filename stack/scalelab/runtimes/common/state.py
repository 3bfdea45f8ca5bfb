"""A runtime's state file (``<home>/state.json``): which lab runs, from which workspace, and what
that runtime adds (local: its processes; compose: the image tag; kubernetes: the namespace and
member names). Another Python process — the CLI, a second notebook — reads the same file."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scalelab.paths import STATE_LOCK, write_state


def read(path: Path) -> tuple[int | None, Path | None, dict[str, Any]]:
    """The lab, its workspace and the whole record (empty when nothing was saved yet)."""
    if not path.exists():
        return None, None, {}
    data = json.loads(path.read_text())
    return data.get("lab"), Path(data["workspace"]) if data.get("workspace") else None, data


def write(path: Path, lab: int | None, workspace: Path | None, extra: Callable[[], dict[str, Any]]) -> None:
    """Save the state at once; ``extra()`` runs under the lock, so the last writer saves the latest."""
    with STATE_LOCK:
        data = {"lab": lab, "workspace": str(workspace) if workspace else None, **extra()}
        write_state(path, json.dumps(data, indent=1))
