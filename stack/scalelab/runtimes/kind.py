"""The ``kind`` runtime: the stack on a kind Kubernetes cluster (see issue: lab 06).

Not built yet: it says so in one line instead of pretending.
"""

import shutil

from scalelab.errors import RuntimeUnavailable


class KindRuntime:
    name = "kind"

    def __init__(self, state_dir):
        if shutil.which("kind") is None:
            raise RuntimeUnavailable("kind not found — install kind >= 0.27 or use runtime=\"local\"")
        raise RuntimeUnavailable(
            "kind runtime not implemented yet in this version of the lab — use runtime=\"local\""
        )
