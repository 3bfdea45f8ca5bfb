"""The user service (uvicorn + FastAPI) as a local process: ``users-1``, ``users-2``, ..."""

import json
import sys

import httpx

from scalelab.plans import plan_for
from scalelab.process import ProcessRecord


def record(rt, name: str, port: int) -> ProcessRecord:
    plan = plan_for(rt.lab)
    env = {
        "SHOP_DATABASE_URL": rt.database_url("app"),
        "SHOP_INSTANCE": name,
        "SHOP_WORKSPACE": str(rt.workspace),
        "SHOP_EXERCISES": json.dumps(list(plan.exercises)),
        "SHOP_PLANNED_REPLICAS": "3",
        **plan.settings,
    }
    if plan.has("redis"):
        env["SHOP_REDIS_URL"] = rt.redis_url()
    argv = [sys.executable, "-m", "uvicorn", "shop.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port),
            "--timeout-graceful-shutdown", "10", "--no-access-log", "--log-level", "info"]
    return ProcessRecord(name=name, argv=argv, log=str(rt.home / f"logs/{name}.log"), port=port, env=env)


def ready(rt, rec: ProcessRecord) -> bool:
    return httpx.get(f"http://127.0.0.1:{rec.port}/ready", timeout=2).status_code == 200
