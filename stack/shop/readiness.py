"""A file that says "this replica is ready", for members that serve no HTTP (a Celery worker,
the relay, the projector): on Kubernetes their readiness probe is ``test -e`` of it, as cheap
as a probe gets. Written right after the member announced itself in Redis (the announcement
the driver checks on local and compose), removed when it shuts down. ``SHOP_READY_FILE`` names
it; unset, nothing is written.
"""

import os


def mark(ready: bool) -> None:
    path = os.environ.get("SHOP_READY_FILE")
    if not path:
        return
    if ready:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
