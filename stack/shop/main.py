"""The user service's app factory: ``uvicorn --factory shop.main:create_app``."""

import logging
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shop import cache, metrics, release
from shop.api import contract
from shop.api.routes import accounts, auth, avatars, debug, health, users, work
from shop.config import Settings
from shop.db import close_pool, create_pool, server_max_connections
from shop.errors import ExerciseNotDone, install_handlers
from shop.exercises import Exercises
from shop.memory import MemoryProbe
from shop.middleware import InstanceHeader, InternalErrors, RequestBody
from shop.ratelimit import RateLimit, RateLimiter

log = logging.getLogger("uvicorn.error")  # configured by uvicorn: lines land in the member's log


async def _pool_bounds(settings: Settings, exercises: Exercises) -> tuple[int, int, str]:
    """Pool (min, max) from the pool exercise, or the settings when it is not done yet."""
    try:
        pool_size = exercises.module("pool").pool_size
        max_connections = await server_max_connections(settings.database_url)
        low, high = pool_size(os.cpu_count() or 1, max_connections, settings.planned_replicas)
        return int(low), int(high), f"{exercises.source('pool')}: pool_size()"
    except ExerciseNotDone:
        return settings.pool_min_size, settings.pool_max_size, "settings (pool exercise not done)"
    except NotImplementedError:
        return settings.pool_min_size, settings.pool_max_size, "settings (pool_size() is still the stub)"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        exercises = Exercises(settings)
        low, high, source = await _pool_bounds(settings, exercises)
        app.state.pool = await create_pool(settings, low, high, app_name=f"shop-users:{settings.instance}")
        app.state.pool_source = source
        app.state.exercises = exercises
        # Redis (lab 03): the user cache and the rate limiter; both work without it.
        app.state.redis = cache.connect(settings)
        app.state.user_cache = metrics.CountingCache(cache.UserCache(app.state.redis, exercises, settings.cache_ttl_s))
        app.state.rate_limiter = RateLimiter(app.state.redis, exercises, settings)
        log.info("instance %s ready: pool %d..%d from %s", settings.instance, low, high, source)
        yield
        # SIGTERM: uvicorn stops accepting, lets in-flight requests finish, then we get here.
        await close_pool(app.state.pool)
        if getattr(app.state, "replica_pool", None) is not None:   # lab 04's read pool, made on first read
            await close_pool(app.state.replica_pool)
        await cache.close(app.state.redis)
        log.info("instance %s: pool closed", settings.instance)

    app = FastAPI(title="shop users", lifespan=lifespan)
    app.state.settings = settings
    install_handlers(app)
    app.include_router(health.router)
    app.include_router(users.router)
    app.include_router(auth.router)
    app.include_router(accounts.router)   # lab 04: the double-spend race, N+1
    app.include_router(work.router)       # lab 06: CPU load for the autoscaler
    app.include_router(avatars.router)    # lab 01: the avatar_cache exercise (a memory leak, fixed)
    if settings.debug_memory:             # lab 01: RSS and tracemalloc over HTTP
        app.state.memory_probe = MemoryProbe()
        app.include_router(debug.router)
    app.add_middleware(users.FastRead, route=users.read_route())   # the hot read (see make bench)
    app.add_middleware(InternalErrors)
    planted = release.load(settings.workspace, settings.release_file).planted_error_rate
    if planted:                           # lab 06: a release with a bug, for the canary to catch
        app.add_middleware(release.PlantedErrors, rate=planted)
    app.add_middleware(RequestBody, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    if settings.rate_limit and settings.redis_url:
        app.add_middleware(RateLimit)   # before the body is read; its 429s still carry X-Instance
    app.add_middleware(InstanceHeader, instance=settings.instance)
    metrics.install(app, "users", settings.instance)   # lab 07: /metrics, X-Request-ID, JSON access log
    contract.install(app, settings)   # GET /openapi.json: every answer of every route
    return app
