"""The order service (uvicorn + FastAPI, ``shop.orders_app``) as a local process: ``orders-1``."""

import sys

import httpx

from scalelab.plans import plan_for
from scalelab.process import ProcessRecord
from scalelab.runtimes.local import users as local_users


def record(rt, name: str, port: int) -> ProcessRecord:
    argv = [sys.executable, "-m", "uvicorn", "shop.orders_app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port),
            "--timeout-graceful-shutdown", "10", "--no-access-log", "--log-level", "info"]
    env = local_users.shop_env(rt, name)
    plan = plan_for(rt.lab)
    if plan.has("users") and plan.has("nginx") and rt.members("nginx"):
        env["SHOP_USERS_URL"] = rt.url("users")   # lab 07: the buyer is checked through nginx
    return ProcessRecord(name=name, argv=argv, log=str(rt.home / f"logs/{name}.log"), port=port, env=env)


def ready(rt, rec: ProcessRecord) -> bool:
    return httpx.get(f"http://127.0.0.1:{rec.port}/ready", timeout=2).status_code == 200
