"""Where the lab keeps its state: ``$SCALELAB_HOME``, else ``.scalelab/`` in the repo."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def default_state_dir() -> Path:
    if env := os.environ.get("SCALELAB_HOME"):
        return Path(env)
    if (REPO / "pyproject.toml").exists():
        return REPO / ".scalelab"
    return Path.home() / ".local/state/scalelab"
