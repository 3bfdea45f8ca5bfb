"""Every knob of the shop services, read from the environment (prefix ``SHOP_``)."""

import os
import socket
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    database_url: str = "postgresql://shop@127.0.0.1:5432/shop"
    # Read/write split (lab 04): a hot standby that serves reads. Unset = every query on
    # the primary (labs 01-03). Which reads it serves is the read_routing exercise's call.
    database_replica_url: str | None = None
    replica_pool_max_size: int = Field(10, ge=1)
    # After a write, the client gets a cookie with the write's WAL position (LSN) for this
    # long: its reads then go to the replica only once the replica has replayed that far.
    write_lsn_cookie_max_age_s: int = Field(300, ge=1)
    # Pool bounds used when no pool exercise is loaded (see exercises.py).
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(10, ge=1)
    # How many replicas the operator plans to run: the pool exercise sizes one
    # replica's pool so that all of them fit under Postgres' max_connections.
    planned_replicas: int = Field(1, ge=1)
    # Waiting for a free pool connection gives up before a query would: 503, not a hang.
    acquire_timeout_s: float = Field(2.0, gt=0)
    statement_timeout_ms: int = Field(5000, ge=0)

    # The name this process puts in every response's X-Instance header.
    instance: str = Field(default_factory=_default_instance)

    # A request: its headers within headers_timeout_s of its first byte (else the connection is
    # closed: shop/http_protocol.py), then a body of at most max_body_bytes (413) within
    # body_timeout_s (408). A slow client holds a connection that long, never forever.
    headers_timeout_s: float = Field(10.0, gt=0, le=300)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    body_timeout_s: float = Field(10.0, gt=0, le=300)
    page_size_max: int = Field(100, ge=1)

    # Stateless auth (lab 02): JWTs signed with this secret; every replica gets the same
    # one, so a token from any replica is good on all. Unset = POST /auth/token is off.
    jwt_secret: SecretStr | None = Field(None, min_length=32)
    jwt_ttl_s: int = Field(900, ge=1, le=24 * 3600)
    # When true, PATCH and DELETE /users/{id} need a Bearer token for that same user.
    auth_required: bool = False

    # Exercises: learner code loaded from this directory (see exercises.py).
    workspace: Path | None = None
    exercises: list[str] = Field(default_factory=list)
    # Lab 06's deploys: the file in the workspace with the release this colour runs (shop/release.py).
    release_file: str | None = None

    # Redis (lab 03): the user cache and the rate limiter. Unset = neither runs.
    redis_url: str | None = None
    # Per Redis command: a slow or dead Redis costs a request at most this, then the DB path.
    redis_timeout_s: float = Field(0.25, gt=0)
    redis_max_connections: int = Field(32, ge=1)
    cache_ttl_s: int = Field(60, ge=1)
    # Rate limiting: at most `rate_limit` requests per client per window; 0 = off.
    # A client is its X-Client-Id (API key); with rate_limit_by_ip, requests without
    # one count against the client IP that nginx forwards in X-Real-IP.
    rate_limit: int = Field(0, ge=0)
    rate_limit_window_s: int = Field(1, ge=1)
    rate_limit_by_ip: bool = False

    # Orders and Celery workers (lab 05). Which broker carries them, and how it keeps them, is
    # broker.yaml's call (shop/broker.py): the stack's Redis (redis_url) or its RabbitMQ (this URL).
    rabbitmq_url: str | None = None
    # Lab 08's event log on Kafka: set (HOST:PORT) = the relay and the projector use the topic
    # orders.events instead of the Redis Stream (shop/kafka_log.py). Unset = the Stream.
    kafka_bootstrap: str | None = None
    # With publisher confirms on, POST /orders waits at most this long for the broker's confirm.
    broker_confirm_timeout_s: float = Field(5.0, gt=0, le=60)
    # Redis has no real acks: a message a worker took stays in an "unacked" set, and is
    # handed out again when it is not acked within this many seconds (the worker died).
    # It must be longer than any task (or countdown) runs, or a live task is run twice.
    broker_visibility_timeout_s: float = Field(3600, gt=0)
    # The simulated payment call: this long per order (sleep, or CPU for work="cpu").
    order_process_s: float = Field(0.5, ge=0, le=60)
    # Transient failures are retried this many times, after base·2^n seconds.
    order_max_retries: int = Field(3, ge=0, le=20)
    order_retry_base_s: float = Field(0.25, ge=0, le=60)

    # Observability (lab 07): a Celery worker serves its Prometheus metrics on this port (unset = none).
    metrics_port: int | None = Field(None, ge=1, le=65535)
    # ... on this address: loopback for a local process; 0.0.0.0 in a container (compose), where
    # Prometheus scrapes it over the Compose network.
    metrics_host: str = "127.0.0.1"
    # One JSON line per request (and per task) with its request id. Off by default: earlier labs
    # read their services' log tails, which a line per request would flood (lab 07 turns it on).
    access_log: bool = False
    # GET /debug/memory (lab 01's memory leak): the process's RSS and tracemalloc's top allocation
    # sites, over HTTP. Off by default: it tells anyone what the process holds, and tracing is slow.
    debug_memory: bool = False

    # Resilience (lab 07): the order service asks the user service (through nginx) whether
    # the buyer exists. Unset = no call (lab 05: the orders table's foreign key alone).
    users_url: str | None = None
    users_timeout_s: float = Field(0.5, gt=0, le=30)          # per attempt
    users_attempts: int = Field(3, ge=1, le=10)               # 1 = no retry
    users_backoff_base_s: float = Field(0.05, ge=0, le=10)    # full jitter: [0, min(cap, base·2^n)]
    users_backoff_cap_s: float = Field(1.0, ge=0, le=60)
    users_bulkhead: int = Field(8, ge=1, le=1000)             # calls in flight at most; more → 503 bulkhead_full
    breaker_failures: int = Field(5, ge=1, le=1000)           # the circuit_breaker exercise's threshold
    breaker_reset_s: float = Field(2.0, gt=0, le=600)         # ... and its open → half-open timeout
    # The outbox sweep (lab 07): every outbox_sweep_s, publish again the unfinished orders
    # untouched for outbox_stale_s (and a publish that fails answers 202 "deferred", not 503). 0 = off.
    outbox_sweep_s: float = Field(0, ge=0, le=600)
    outbox_stale_s: float = Field(6, gt=0, le=3600)
