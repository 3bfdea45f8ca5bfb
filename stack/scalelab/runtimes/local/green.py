"""Lab 06's green colour of the user service as local processes: ``green-1``, ``green-2``, ...

The same uvicorn app as the blue replicas (``users``), running the release in the workspace's
``green.json`` (``SHOP_RELEASE_FILE``: shop/release.py); nginx splits the requests between the
two colours (``Stack.route``: weights in its upstream, ``common/nginx.py``).
"""

from scalelab.process import ProcessRecord
from scalelab.runtimes.local import users
from scalelab.runtimes.local.users import ready

RELEASE_FILE = "green.json"

__all__ = ["record", "ready"]


def record(rt, name: str, port: int) -> ProcessRecord:
    rec = users.record(rt, name, port)
    rec.env["SHOP_RELEASE_FILE"] = RELEASE_FILE
    return rec
