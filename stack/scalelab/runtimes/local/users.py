"""The user service (uvicorn + FastAPI) as a local process: ``users-1``, ``users-2``, ..."""

import json
import os
import secrets
import sys

import httpx

from scalelab.plans import plan_for
from scalelab.process import ProcessRecord

# uvicorn with a deadline for a request's headers and JSON 400s (read by uvicorn as --http);
# the image sets the same (stack/deploy/shop/Dockerfile).
HTTP_PROTOCOL = "shop.http_protocol:HttpProtocol"


def jwt_secret(rt) -> str:
    """The key every replica signs and checks tokens with: one per stack, in a 0600 file."""
    path = rt.home / "users" / "jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def shop_env(rt, name: str) -> dict[str, str]:
    """The settings every shop process starts with (user and order services, workers, projector)."""
    plan = plan_for(rt.lab)
    env = {
        "SHOP_DATABASE_URL": rt.database_url("app"),
        "SHOP_INSTANCE": name,
        "SHOP_WORKSPACE": str(rt.workspace),
        "SHOP_EXERCISES": json.dumps(list(plan.exercises)),
        "UVICORN_HTTP": HTTP_PROTOCOL,
        **plan.settings,
    }
    if plan.has("redis"):
        env["SHOP_REDIS_URL"] = rt.redis_url()
    if plan.has("rabbitmq"):   # labs 05+: broker.yaml picks which of the two carries the orders
        env["SHOP_RABBITMQ_URL"] = rt.rabbitmq_url()
    return env


def record(rt, name: str, port: int) -> ProcessRecord:
    env = {**shop_env(rt, name), "SHOP_PLANNED_REPLICAS": "3", "SHOP_JWT_SECRET": jwt_secret(rt)}
    argv = [sys.executable, "-m", "uvicorn", "shop.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port),
            "--timeout-graceful-shutdown", "10", "--no-access-log", "--log-level", "info"]
    return ProcessRecord(name=name, argv=argv, log=str(rt.home / f"logs/{name}.log"), port=port, env=env)


def ready(rt, rec: ProcessRecord) -> bool:
    return httpx.get(f"http://127.0.0.1:{rec.port}/ready", timeout=2).status_code == 200
