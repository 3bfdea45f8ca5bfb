"""The Express replica of the user service (lab 02) as a local process: ``express-1``, ...

``node stack/shop-node/src/server.js`` with the same settings as the FastAPI replicas (the
database, the JWT secret, whether tokens are required): nginx puts both kinds behind one
upstream (``common/nginx.py``, UPSTREAM).
"""

import httpx

from scalelab import binaries
from scalelab.process import ProcessRecord
from scalelab.runtimes.local.users import jwt_secret, shop_env


def preflight(rt) -> None:
    """Node 18+ and the app's npm packages, or one line naming the fix (before anything starts)."""
    binaries.node()
    binaries.express_app()


def record(rt, name: str, port: int) -> ProcessRecord:
    app = binaries.express_app()
    env = {**shop_env(rt, name), "SHOP_JWT_SECRET": jwt_secret(rt), "HOST": "127.0.0.1", "PORT": str(port),
           "NODE_ENV": "production"}
    argv = [str(binaries.node().path), str(app / "src" / "server.js")]
    return ProcessRecord(name=name, argv=argv, log=str(rt.home / f"logs/{name}.log"), port=port, env=env)


def ready(rt, rec: ProcessRecord) -> bool:
    return httpx.get(f"http://127.0.0.1:{rec.port}/ready", timeout=2).status_code == 200
