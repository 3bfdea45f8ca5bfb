"""One module per runtime behind the small protocol in ``base``."""

from scalelab.runtimes.base import Runtime


def get_runtime(name: str, state_dir) -> Runtime:
    if name == "local":
        from scalelab.runtimes.local import LocalRuntime
        return LocalRuntime(state_dir)
    if name == "compose":
        from scalelab.runtimes.compose import ComposeRuntime
        return ComposeRuntime(state_dir)
    if name == "kind":
        from scalelab.runtimes.kind import KindRuntime
        return KindRuntime(state_dir)
    if name == "kubernetes":
        from scalelab.runtimes.kubernetes.context import ContextRuntime
        return ContextRuntime(state_dir)
    raise ValueError(f"unknown runtime {name!r}: use 'local', 'compose', 'kind' or 'kubernetes'")
