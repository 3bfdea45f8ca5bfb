"""Exercises and checks, one module (or package, when large) per lab: ``from scalelab.labs import lab01``."""

import importlib

# Names earlier notebooks imported; a learner's own copy of a notebook may still use them.
_MOVED = {"lab04_sharding": "scalelab.labs.lab04.shards", "lab07_resilience": "scalelab.labs.lab07.resilience"}


def __getattr__(name: str):
    if name in _MOVED:
        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'scalelab.labs' has no attribute {name!r}")
