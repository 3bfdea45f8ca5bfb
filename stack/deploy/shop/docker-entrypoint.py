"""Entrypoint of the shop images: name this replica, then become the command (exec).

With ``docker compose up --scale users=3`` every replica shares one environment, yet each
must say who it is (``X-Instance: users-2``, as on the local runtime). Docker's DNS knows
each container by its Compose name, ``<project>-users-2`` (Compose v2) or
``<project>_users_2`` (v1): the reverse lookup of the container's own address gives it.
An explicit ``SHOP_INSTANCE`` wins; without a Compose name the hostname is used. The
command may name it: ``{SHOP_INSTANCE}`` in an argument is replaced (``--hostname
{SHOP_INSTANCE}@scalelab`` makes a Celery worker ``worker-2@scalelab``).
"""

import os
import re
import socket
import sys


def _dns_names(address: str) -> list[str]:
    """PTR names of ``address`` from the DNS server itself (/etc/hosts maps it to the hostname)."""
    try:
        import dns.exception
        import dns.resolver   # dnspython: already in the image (email-validator needs it)
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


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: docker-entrypoint.py COMMAND [ARGS...]")
    service = os.environ.get("SHOP_SERVICE")
    if service and not os.environ.get("SHOP_INSTANCE"):
        os.environ["SHOP_INSTANCE"] = replica_name(service) or socket.gethostname()
    # "{SHOP_INSTANCE}" in an argument is this replica's name (a worker's Celery --hostname).
    argv = [arg.replace("{SHOP_INSTANCE}", os.environ.get("SHOP_INSTANCE", "")) for arg in sys.argv[1:]]
    os.execvp(argv[0], argv)   # the command becomes this process: it gets the signals


if __name__ == "__main__":
    main()
