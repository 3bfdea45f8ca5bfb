"""Prometheus metrics (the official ``prometheus-client``) and the per-request JSON log line.

Every service exposes ``GET /metrics`` (lab 07); Prometheus scrapes it every second.

* ``http_requests_total{service, route, method, status}`` and
  ``http_request_duration_seconds{service, route, method, status}`` (a histogram): ``route``
  is the route *template* (``/users/{user_id}``), never the raw path, so a million user ids
  stay one series; a request no route matched is ``<unmatched>``.
* ``db_pool_connections{pool, state}`` (in_use / idle) and ``db_pool_max_connections{pool}``,
  read from the asyncpg pools when scraped.
* ``cache_requests_total{cache, result}`` (user service): hit, miss, or bypass (cache off).
* ``orders_queue_depth{queue}`` (the Celery queue's length in Redis) and ``orders_by_status{status}``
  (order service), read when scraped.
* Celery workers serve their own port (``SHOP_METRICS_PORT``):
  ``celery_tasks_total{task, outcome}`` (processed / retried / failed) and
  ``celery_task_duration_seconds{task}``.
* Every process also exports ``process_cpu_seconds_total`` and friends (the client's
  default process collector): the CPU alert reads it.

The middleware is pure ASGI (no BaseHTTPMiddleware): one dict lookup, two metric updates
and one log line per request.
"""

import asyncio
import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from shop.logs import REQUEST_ID, clean_request_id, json_logger, log_json

# Buckets around the alert threshold (200 ms) so the p95 near it is read with some precision.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
UNMATCHED = "<unmatched>"
METRICS_PATH = "/metrics"   # a plain Starlette route: no scope["route"] names it

REQUESTS = Counter("http_requests_total", "HTTP requests answered, by route template and status",
                   ["service", "route", "method", "status"])
LATENCY = Histogram("http_request_duration_seconds", "Time to answer an HTTP request (seconds)",
                    ["service", "route", "method", "status"], buckets=LATENCY_BUCKETS)
POOL = Gauge("db_pool_connections", "Connections of the asyncpg pool, by state", ["pool", "state"])
POOL_MAX = Gauge("db_pool_max_connections", "The asyncpg pool's upper bound", ["pool"])
CACHE = Counter("cache_requests_total", "Cache lookups by result (hit, miss, bypass)", ["cache", "result"])
# Labelled, so that only the process that sets it exports it (an unlabelled gauge reads 0 everywhere).
QUEUE_DEPTH = Gauge("orders_queue_depth", "Messages waiting in the Celery queue (a Redis list or a RabbitMQ queue)",
                    ["queue"])
ORDERS = Gauge("orders_by_status", "Orders in the database, by status", ["status"])
TASKS = Counter("celery_tasks_total", "Celery task runs by outcome (processed, retried, failed)",
                ["task", "outcome"])
TASK_DURATION = Histogram("celery_task_duration_seconds", "Time one task run took (seconds)", ["task"],
                          buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0))

access_log = json_logger("shop.access")


class Observe:
    """Request id, metrics and one JSON log line per HTTP request (outermost middleware)."""

    def __init__(self, app, service: str, instance: str, log_requests: bool = True):
        self.app = app
        self.service = service
        self.instance = instance
        self.log_requests = log_requests
        # labels() takes a lock and checks its arguments on every call: keep each label set's
        # children (a bounded set: route templates x methods x statuses).
        self._children: dict[tuple, tuple] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = clean_request_id(dict(scope["headers"]).get(b"x-request-id"))
        token = REQUEST_ID.set(request_id)
        header = (b"x-request-id", request_id.encode())
        status = 500   # what the client gets when the app raises before answering
        start = time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or (
                METRICS_PATH if scope["path"] == METRICS_PATH else UNMATCHED)
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            key = (route, method, status)
            if (children := self._children.get(key)) is None:
                labels = (self.service, route, method, str(status))
                children = self._children[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
            children[0].inc()
            children[1].observe(elapsed)
            if self.log_requests and (route != METRICS_PATH or status != 200):   # not a line per scrape
                log_json(access_log, logging.WARNING if status >= 500 else logging.INFO,
                         service=self.service, instance=self.instance, request_id=request_id, method=method,
                         route=route, status=status, ms=round(elapsed * 1000, 2))
            REQUEST_ID.reset(token)


def _pool_gauges(name: str, pool) -> None:
    if pool is None:
        return
    size, idle = pool.get_size(), pool.get_idle_size()
    POOL.labels(name, "in_use").set(size - idle)
    POOL.labels(name, "idle").set(idle)
    POOL_MAX.labels(name).set(pool.get_max_size())


async def _order_gauges(state) -> None:
    """Queue depth and orders by status, each bounded (a scrape never hangs on a dead store)."""
    from shop import orders
    try:
        QUEUE_DEPTH.labels(orders.QUEUE).set(await asyncio.wait_for(state.broker.depth(), 0.5))
    except Exception:   # the broker down: no fresh reading; Prometheus sees the series go stale below
        QUEUE_DEPTH.labels(orders.QUEUE).set(float("nan"))
    try:
        async with state.pool.acquire(timeout=0.5) as conn:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM orders GROUP BY status", timeout=0.5)
        ORDERS.clear()
        for row in rows:
            ORDERS.labels(row["status"]).set(row["n"])
    except Exception:   # the database down: no reading this time
        ORDERS.clear()


def install(app, service: str, instance: str) -> None:
    """Add ``GET /metrics`` and the Observe middleware to a FastAPI app (call it last)."""

    async def metrics(request: Request) -> Response:
        state = request.app.state
        _pool_gauges("primary", getattr(state, "pool", None))
        _pool_gauges("replica", getattr(state, "replica_pool", None))
        if service == "orders":
            await _order_gauges(state)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.add_route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(Observe, service=service, instance=instance, log_requests=app.state.settings.access_log)


class CountingCache:
    """Wraps the user cache: counts each lookup as a hit, a miss (the DB was read) or a bypass."""

    def __init__(self, inner):
        self._inner = inner
        self._counts: dict[str, Counter] = {}   # each result's child, made on its first count (as before)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def get(self, user_id, load):
        missed = False

        async def counting_load(uid):
            nonlocal missed
            missed = True
            return await load(uid)

        user = await self._inner.get(user_id, counting_load)
        result = "bypass" if self._inner.off_reason else "miss" if missed else "hit"
        if (counter := self._counts.get(result)) is None:
            counter = self._counts[result] = CACHE.labels("user", result)
        counter.inc()
        return user


# -- Celery workers ------------------------------------------------------------------------
OUTCOMES = {"SUCCESS": "processed", "RETRY": "retried", "FAILURE": "failed"}
task_log = json_logger("shop.tasks.json")
_started: dict[str, tuple[float, str | None]] = {}


def connect_worker_signals(settings_fn) -> None:
    """Task metrics, the request id across the broker, and the worker's metrics port."""
    from celery import signals

    @signals.before_task_publish.connect(weak=False)
    def _pass_request_id(headers=None, **_):
        # Publishing runs in asyncio.to_thread: the request's context (its id) came along.
        if headers is not None and (request_id := REQUEST_ID.get()):
            headers["request_id"] = request_id

    @signals.celeryd_init.connect(weak=False)
    def _serve_metrics(**_):
        settings = settings_fn()
        if settings.metrics_port:
            from prometheus_client import start_http_server
            start_http_server(settings.metrics_port, addr=settings.metrics_host)

    @signals.task_prerun.connect(weak=False)
    def _start(task_id=None, task=None, **_):
        request_id = getattr(task.request, "request_id", None) if task is not None else None
        _started[task_id] = (time.perf_counter(), request_id)

    @signals.task_postrun.connect(weak=False)
    def _done(task_id=None, task=None, args=None, retval=None, state=None, **_):
        start, request_id = _started.pop(task_id, (None, None))
        name = getattr(task, "name", "?")
        outcome = OUTCOMES.get(state, str(state).lower())
        TASKS.labels(name, outcome).inc()
        elapsed = time.perf_counter() - start if start is not None else None
        if elapsed is not None:
            TASK_DURATION.labels(name).observe(elapsed)
        settings = settings_fn()
        if not settings.access_log:
            return
        log_json(task_log, logging.INFO if outcome != "failed" else logging.WARNING,
                 service="worker", instance=settings.instance, request_id=request_id, task=name, task_id=task_id,
                 args=list(args or ()), outcome=outcome, result=retval if isinstance(retval, str) else None,
                 ms=round(elapsed * 1000, 2) if elapsed is not None else None)
