"""Liveness, readiness and pool statistics: what load balancers and the lab look at."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from shop.api.contract import errors
from shop.db import DB_UNAVAILABLE
from shop.errors import error_body

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict:
    """Liveness: the process runs and serves HTTP. Touches nothing else."""
    return {"status": "ok", "instance": request.app.state.settings.instance}


@router.get("/ready", responses=errors(503))
async def ready(request: Request):
    """Readiness: this replica can serve real requests (its database answers)."""
    pool = request.app.state.pool
    try:
        async with pool.acquire(timeout=2) as conn:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), 2)
    except DB_UNAVAILABLE as exc:
        return JSONResponse(error_body("not_ready", f"database: {type(exc).__name__}"), status_code=503)
    return {"status": "ready", "instance": request.app.state.settings.instance}


@router.get("/stats")
async def stats(request: Request) -> dict:
    """Read-only numbers about this replica (the lab's checks read them)."""
    state = request.app.state
    pool = state.pool
    return {
        "instance": state.settings.instance,
        "pool": {
            "min_size": pool.get_min_size(),
            "max_size": pool.get_max_size(),
            "size": pool.get_size(),
            "idle": pool.get_idle_size(),
            "source": state.pool_source,
        },
        "exercises": {name: state.exercises.source(name) for name in ("user_queries", "pool", "avatar_cache")},
        "cache": state.user_cache.stats(),
        "rate_limit": state.rate_limiter.stats(),
    }
