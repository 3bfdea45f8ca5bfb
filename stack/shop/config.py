"""Every knob of the shop services, read from the environment (prefix ``SHOP_``)."""

import os
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    database_url: str = "postgresql://shop@127.0.0.1:5432/shop"
    # Pool bounds used when no pool exercise is loaded (see exercises.py).
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(10, ge=1)
    # How many replicas the operator plans to run: the pool exercise sizes one
    # replica's pool so that all of them fit under Postgres' max_connections.
    planned_replicas: int = Field(1, ge=1)
    acquire_timeout_s: float = Field(5.0, gt=0)
    statement_timeout_ms: int = Field(5000, ge=0)

    # The name this process puts in every response's X-Instance header.
    instance: str = Field(default_factory=_default_instance)

    max_body_bytes: int = Field(64 * 1024, ge=1024)
    page_size_max: int = Field(100, ge=1)

    # Exercises: learner code loaded from this directory (see exercises.py).
    workspace: Path | None = None
    exercises: list[str] = Field(default_factory=list)
