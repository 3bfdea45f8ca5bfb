"""Where the lab keeps its state: ``$SCALELAB_HOME``, else ``.scalelab/`` in the repo."""

import hashlib
import os
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def default_state_dir() -> Path:
    if env := os.environ.get("SCALELAB_HOME"):
        return Path(env)
    if (REPO / "pyproject.toml").exists():
        return REPO / ".scalelab"
    return Path.home() / ".local/state/scalelab"


# Held while a runtime changes what it knows of its members and writes it down: a drill's
# faults kill and start members from threads of their own.
STATE_LOCK = threading.RLock()


def write_state(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once (a reader sees the old file or the new one); call
    it holding STATE_LOCK with ``text`` made under it, so the last writer wrote the latest state."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def nobody_scratch(owner: Path, what: str) -> Path:
    """Where a server dropped to ``nobody`` (as root) keeps files: ``nobody`` may not be able
    to reach ``owner`` (e.g. under a mode-700 home), so it lives in the temp dir, named after
    ``owner``. ``purge_scratch(owner)`` deletes every one of them with the stack's data."""
    key = hashlib.sha1(str(owner.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"scalelab-{key}" / what


def purge_scratch(owner: Path) -> None:
    import shutil
    shutil.rmtree(nobody_scratch(owner, "x").parent, ignore_errors=True)
