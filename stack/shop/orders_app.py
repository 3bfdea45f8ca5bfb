"""The order service's app factory: ``uvicorn --factory shop.orders_app:create_app``.

The same package as the user service (config, db, errors, middleware), its own small
app: it accepts orders and enqueues them; Celery workers (shop/tasks.py) process them.
"""

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shop import broker, metrics, tasks
from shop import orders as order_flow
from shop.api import contract
from shop.api.routes import health, orders
from shop.broker import BrokerClient, BrokerUnavailable
from shop.config import Settings
from shop.db import close_pool, create_pool
from shop.errors import error_body, install_handlers
from shop.exercises import Exercises
from shop.middleware import InstanceHeader, InternalErrors, RequestBody
from shop.resilience import OutboxSweep
from shop.users_client import UsersClient

log = logging.getLogger("uvicorn.error")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool = await create_pool(settings, settings.pool_min_size, settings.pool_max_size,
                                           app_name=f"shop-orders:{settings.instance}")
        app.state.celery = celery = tasks.make_celery(settings)
        app.state.broker = BrokerClient(settings, celery.broker_settings)
        try:   # RabbitMQ: the queues exist before the first order (a worker declares them too)
            await asyncio.to_thread(broker.declare, celery, celery.broker_settings)
        except broker.PUBLISH_ERRORS as exc:
            log.warning("could not declare the broker's queues yet: %s: %s", type(exc).__name__, exc)
        # Lab 07: the buyer is checked with the user service (SHOP_USERS_URL), through a bulkhead
        # and the learner's circuit breaker; the outbox sweep publishes lost orders again.
        app.state.users_client = UsersClient(settings, Exercises(settings)) if settings.users_url else None
        app.state.outbox = None
        if settings.outbox_sweep_s:
            app.state.outbox = OutboxSweep(app.state.pool, lambda order_id: broker.publish(
                celery, order_id, settings.broker_confirm_timeout_s), settings.outbox_sweep_s, settings.outbox_stale_s)
            app.state.outbox.start()
        log.info("instance %s ready: orders go to queue %r on %s", settings.instance, order_flow.QUEUE,
                 celery.broker_settings.label())
        yield
        if app.state.outbox is not None:
            await app.state.outbox.stop()
        if app.state.users_client is not None:
            await app.state.users_client.aclose()
        await close_pool(app.state.pool)
        await app.state.broker.aclose()
        app.state.celery.close()

    app = FastAPI(title="shop orders", lifespan=lifespan)
    app.state.settings = settings
    install_handlers(app)
    app.add_api_route("/health", health.health, methods=["GET"], tags=["health"])

    @app.get("/ready", tags=["health"], responses=contract.errors(503))
    async def ready(request: Request):
        """Ready when both halves of accepting an order work: the database and the broker."""
        answer = await health.ready(request)
        if isinstance(answer, JSONResponse):
            return answer
        try:
            await request.app.state.broker.ping()
        except BrokerUnavailable as exc:
            return JSONResponse(error_body("not_ready", f"broker: {exc}"), status_code=503)
        return answer

    @app.get("/stats", tags=["health"])
    async def stats(request: Request) -> dict:
        """Read-only numbers (lab 07): the user-service client (bulkhead, breaker) and the outbox sweep."""
        state = request.app.state
        users_client, outbox = getattr(state, "users_client", None), getattr(state, "outbox", None)
        return {"instance": settings.instance, "users_client": users_client.stats() if users_client else None,
                "outbox": outbox.stats() if outbox else None}

    app.include_router(orders.router)
    app.add_middleware(InternalErrors)
    app.add_middleware(RequestBody, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(InstanceHeader, instance=settings.instance)
    metrics.install(app, "orders", settings.instance)   # lab 07: /metrics, X-Request-ID, JSON access log
    contract.install(app, settings)   # GET /openapi.json: every answer of every route
    return app
