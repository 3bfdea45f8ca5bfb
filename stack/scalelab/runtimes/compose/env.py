"""The secrets and env files of a compose stack, in ``<state>/compose/`` (mode 0600).

* ``secrets.json`` — passwords and the JWT key, created once per state directory;
* ``compose.env`` — what compose.yaml interpolates (``--env-file``): passwords, image tag,
  paths of the workspace and of the nginx rendering;
* ``shop.env`` — what the user service gets (``env_file``): the lab's settings, the JWT key,
  the Redis and RabbitMQ URLs. The Postgres superuser's password is not in it;
* ``valkey/broker.conf`` — the stack's Redis append-only settings (lab 05's broker.yaml).

Nothing here is ever written into an image.
"""

import json
import os
import secrets
from pathlib import Path

from scalelab import broker
from scalelab.plans import Plan
from scalelab.runtimes.common import replication

NAMES = ("postgres", "shop", "redis", "jwt", "rabbitmq")


def _private_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def passwords(home: Path) -> dict[str, str]:
    """Every secret of the stack, created once per state directory (a name added later: then)."""
    path = home / "secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in NAMES if name not in known]
    if missing:
        known |= {name: secrets.token_urlsafe(32 if name == "jwt" else 18) for name in missing}
        _private_write(path, json.dumps(known))
    return known


def _lines(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def compose_env(home: Path, tag: str, workspace: Path | None, nginx_conf: Path, kafka_tag: str | None = None) -> Path:
    pw = passwords(home)
    path = home / "compose.env"
    _private_write(path, _lines({
        "SCALELAB_TAG": tag,
        "KAFKA_TAG": kafka_tag or "dev",                                     # lab 08 on Kafka (its own image)
        "POSTGRES_PASSWORD": pw["postgres"],
        "SHOP_DB_PASSWORD": pw["shop"],
        "REDIS_PASSWORD": pw["redis"],
        "SHOP_ENV_FILE": str(home / "shop.env"),
        "SCALELAB_WORKSPACE": str(workspace or home / "workspace"),
        "SCALELAB_NGINX_CONF": str(nginx_conf),
        "REPLICATION_PASSWORD": replication.password_in(home / "standby"),   # lab 04's standby
        "SCALELAB_PROMETHEUS_CONF": str(home / "prometheus"),                # lab 07 (compose_prometheus)
        "RABBITMQ_PASSWORD": pw["rabbitmq"],                                 # labs 05, 07, 08
        "SCALELAB_VALKEY_CONF": str(home / "valkey"),                        # lab 05 (valkey_conf)
    }))   # host ports: chosen per container when the driver creates it (compose.py)
    return path


def valkey_conf(home: Path, plan: Plan | None, workspace: Path | None) -> Path:
    """``<home>/valkey/broker.conf``: the append-only settings broker.yaml gives the stack's Redis
    (none: memory only), mounted into the redis container and read when it starts."""
    lines = broker.redis_conf(broker.settings_in(plan, workspace)) if plan is not None and plan.has("orders") \
        else ["appendonly no"]
    path = home / "valkey" / "broker.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o644)   # no secret in it; the container's valkey user reads it
    return path


def shop_env(home: Path, plan: Plan | None, kafka: bool = False) -> Path:
    """The shop services' settings (users, orders, workers, relay, projector), as
    local/users.shop_env gives them to a local process."""
    pw = passwords(home)
    values = {
        "SHOP_EXERCISES": json.dumps(list(plan.exercises) if plan else []),
        "SHOP_PLANNED_REPLICAS": "3",
        "SHOP_JWT_SECRET": pw["jwt"],
        **(plan.settings if plan else {}),
    }
    if plan is not None and plan.has("standby"):     # lab 04's read/write split, inside the network
        values["SHOP_DATABASE_REPLICA_URL"] = f"postgresql://shop:{pw['shop']}@standby:5432/shop"
    if plan is not None and plan.has("redis"):
        values["SHOP_REDIS_URL"] = f"redis://:{pw['redis']}@redis:6379/0"   # lab 05 starts with it as the broker
    if plan is not None and plan.has("rabbitmq"):   # broker.yaml picks which of the two carries the orders
        values["SHOP_RABBITMQ_URL"] = f"amqp://shop:{pw['rabbitmq']}@rabbitmq:5672//"
    if kafka:   # lab 08: a broker runs, so the relay and the projector use the topic (shop/kafka_log.py)
        values["SHOP_KAFKA_BOOTSTRAP"] = "kafka:9092"
    if plan is not None and plan.has("orders") and plan.has("users") and plan.has("nginx"):
        values["SHOP_USERS_URL"] = "http://nginx:8080"   # lab 07: orders check the buyer through nginx
    path = home / "shop.env"
    _private_write(path, _lines(values))
    return path
