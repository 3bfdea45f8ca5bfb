"""Entrypoint of the shop images: name this replica, then become the command (exec).

With ``docker compose up --scale users=3`` every replica shares one environment, yet each
must say who it is (``X-Instance: users-2``, as on the local runtime). Docker's DNS knows
each container by its Compose name, ``<project>-users-2`` (Compose v2) or
``<project>_users_2`` (v1): the reverse lookup of the container's own address gives it.
An explicit ``SHOP_INSTANCE`` wins; without a Compose name the hostname is used.

On Kubernetes a Deployment's pods have generated names; the scalelab driver numbers them
(``users-2``) and writes the name into ``SHOP_INSTANCE_FILE`` (an emptyDir) once the pod runs:
the entrypoint waits for that file (at most ``SHOP_INSTANCE_WAIT_S``, default 120 s; then
the pod's own name, said in the log). The command may name it: ``{SHOP_INSTANCE}`` in an
argument is replaced (``--hostname {SHOP_INSTANCE}@scalelab`` makes a Celery worker
``worker-2@scalelab``).
"""

import os
import re
import socket
import sys
import time


def _dns_names(address: str) -> list[str]:
    """PTR names of ``address`` from the DNS server itself (/etc/hosts maps it to the hostname)."""
    try:
        import dns.exception
        import dns.resolver  # dnspython: already in the image (email-validator needs it)
    except ImportError:
        return []
    try:
        return [str(record) for record in dns.resolver.resolve_address(address, lifetime=2)]
    except dns.exception.DNSException:
        return []


def replica_name(service: str) -> str | None:
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return None
    for name in _dns_names(address):
        if match := re.search(rf"[-_]{re.escape(service)}[-_](\d+)\.", name):
            return f"{service}-{match[1]}"
    return None


def given_name(path: str, wait_s: float) -> str | None:
    """The name the driver writes into ``path``, waited for (polled, bounded)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            name = open(path).read().strip()
            if name:
                return name
        except OSError:
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: docker-entrypoint.py COMMAND [ARGS...]")
    service = os.environ.get("SHOP_SERVICE")
    if ready := os.environ.get("SHOP_READY_FILE"):   # a container restarted in its pod: not ready yet
        try:
            os.unlink(ready)
        except FileNotFoundError:
            pass
    if path := os.environ.get("SHOP_INSTANCE_FILE"):
        name = given_name(path, float(os.environ.get("SHOP_INSTANCE_WAIT_S", "120")))
        if name:
            os.environ["SHOP_INSTANCE"] = name
        else:
            print(f"docker-entrypoint: no member name in {path}: this replica calls itself "
                  f"{os.environ.get('SHOP_INSTANCE') or socket.gethostname()}", file=sys.stderr, flush=True)
    if service and not os.environ.get("SHOP_INSTANCE"):
        os.environ["SHOP_INSTANCE"] = replica_name(service) or socket.gethostname()
    # "{SHOP_INSTANCE}" in an argument is this replica's name (a worker's Celery --hostname).
    argv = [arg.replace("{SHOP_INSTANCE}", os.environ.get("SHOP_INSTANCE", "")) for arg in sys.argv[1:]]
    os.execvp(argv[0], argv)   # the command becomes this process: it gets the signals


if __name__ == "__main__":
    main()
