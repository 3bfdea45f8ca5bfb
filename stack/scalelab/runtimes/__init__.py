"""Where the stack runs: one package per runtime behind the protocols in ``base``.

    base.py        the core protocol every runtime implements, and the capabilities some have
    local/         a member is a process on 127.0.0.1
    compose/       a member is a Docker container (stack/deploy/compose.yaml)
    kubernetes/    a member is a pod on any cluster of a kubeconfig context
    kind/          the kubernetes runtime on the local kind cluster
    common/        what several runtimes share (Docker engine, images, nginx config, replication, Prometheus)
"""

import importlib

from scalelab.runtimes.base import Runtime, has_capability

# name -> (module, class): imported only when that runtime is asked for
RUNTIMES = {
    "local": ("scalelab.runtimes.local", "LocalRuntime"),
    "compose": ("scalelab.runtimes.compose", "ComposeRuntime"),
    "kind": ("scalelab.runtimes.kind", "KindRuntime"),
    "kubernetes": ("scalelab.runtimes.kubernetes.context", "ContextRuntime"),
}


def runtime_class(name: str) -> type:
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}: use 'local', 'compose', 'kind' or 'kubernetes'")
    module, cls = RUNTIMES[name]
    return getattr(importlib.import_module(module), cls)


def get_runtime(name: str, state_dir) -> Runtime:
    return runtime_class(name)(state_dir)


def runtimes_with(capability: str) -> list[str]:
    """The runtimes that have ``capability`` (``base.CAPABILITIES``), by name."""
    return [name for name in RUNTIMES if has_capability(runtime_class(name), capability)]
