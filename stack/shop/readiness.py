"""A file that says "this replica is ready", for members that serve no HTTP (a Celery worker,
the relay, the projector): on Kubernetes their readiness probe is ``test -e`` of it, as cheap
as a probe gets. Written right after the member announced itself in Redis (the announcement
the driver checks on local and compose), removed when it shuts down. The relay's and the
projector's loops touch it (``beat``) at most once a second: their liveness probe restarts
one whose loop stopped turning. ``SHOP_READY_FILE`` names it; unset, nothing is written.
"""

import os
import time

_last_beat = 0.0


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


def beat() -> None:
    """The loop is alive: touch the file (at most once a second)."""
    global _last_beat
    path = os.environ.get("SHOP_READY_FILE")
    now = time.monotonic()
    if not path or now - _last_beat < 1.0:
        return
    _last_beat = now
    try:
        os.utime(path)
    except FileNotFoundError:
        pass          # not ready yet (or stopping): nothing to say
