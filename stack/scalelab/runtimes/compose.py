"""The ``compose`` runtime: the stack as Docker containers (see issue: compose runtime).

Not built yet: it says so in one line instead of pretending.
"""

from scalelab.errors import RuntimeUnavailable


class ComposeRuntime:
    name = "compose"

    def __init__(self, state_dir):
        raise RuntimeUnavailable(
            "compose runtime not implemented yet in this version of the lab — use runtime=\"local\""
        )
