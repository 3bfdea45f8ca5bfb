"""scalelab — the driver the lab notebooks import.

    from scalelab import Stack
    with Stack(lab=1) as stack:          # runtime="local" | "compose" | "kind"
        print(stack.url("users"))
"""

from scalelab.errors import RuntimeUnavailable, ScalelabError
from scalelab.shell import sh
from scalelab.stack import Stack

__all__ = ["Stack", "RuntimeUnavailable", "ScalelabError", "sh"]
