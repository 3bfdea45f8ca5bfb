"""The seam between the labs and where the stack runs.

Everything outside ``runtimes/`` talks to a ``Runtime`` only through this protocol;
no lab or check knows which runtime is active.
"""

from pathlib import Path
from typing import Protocol

import pandas as pd

from scalelab.plans import Plan


class Runtime(Protocol):
    name: str

    def up(self, plan: Plan, workspace: Path) -> bool:
        """Bring the plan's stack up; re-use what already runs. True if anything was started."""

    def down(self) -> None:
        """Stop and remove everything this runtime started. Safe to call twice."""

    def running_lab(self) -> int | None:
        """The lab whose stack is up now, or None."""

    def url(self, service: str) -> str:
        """Base URL of a service's entry point (e.g. ``http://127.0.0.1:PORT``)."""

    def database_url(self, role: str = "app", member: str | None = None) -> str:
        """A DSN for the lab database as the app role (``app``) or the superuser (``admin``);
        on the primary, or on a standby member (``member="standby-1"``, lab 04)."""

    # Optional (lab 04; a runtime without them has no standbys, Stack says so in one line):
    # configure_replication(config) -> dict   apply the primary side of streaming replication
    # rebuild_standby(member) -> float         a fresh base backup of the primary, started as ``member``
    # Optional (lab 07, where the plan runs Prometheus):
    # check_alert_rules(path) -> str | None    promtool's complaint about a rules file, None when valid
    # install_alert_rules(path | None)         load it (None: no rules) into the stack's Prometheus, reload

    def redis_url(self) -> str:
        """``redis://:PASSWORD@HOST:PORT/0`` of the stack's Redis (labs 03+)."""

    # Optional (labs 05, 07, 08, where the plan runs RabbitMQ):
    # rabbitmq_url() -> str                    ``amqp://USER:PASSWORD@HOST:PORT//`` of the stack's RabbitMQ

    def members(self, service: str) -> list[str]:
        """Names of a service's members, e.g. ``["users-1", "users-2"]``."""

    def member_url(self, member: str) -> str:
        """Base URL of one member, bypassing any load balancer."""

    # Optional (lab 07): inside_url(service) -> str   how the stack's own members reach ``service``

    def scale(self, service: str, replicas: int) -> None: ...

    def kill(self, member: str, signal: str = "KILL") -> None:
        """Send ``signal`` (KILL, TERM, INT) to a member; it stays down until ``start``."""

    def start(self, member: str) -> None:
        """Start a stopped or killed member again, and wait until it is ready."""

    def restart(self, member: str) -> None:
        """Graceful stop (SIGTERM), then start, waiting until ready."""

    def reload(self, service: str) -> None:
        """Re-read configuration (e.g. ``nginx -s reload``) without dropping connections."""

    def logs(self, member: str, tail: int = 40) -> str: ...

    def cpu_seconds(self, member: str) -> float:
        """Cumulative CPU time (seconds) of a member (lab 06: the model autoscaler's metric)."""

    def autoscaler(self, spec, desired_replicas):
        """An ``scalelab.autoscaler.Autoscaler`` for ``spec`` (lab 06): the driver's model of the
        HPA controller where there is no Kubernetes, the real HPA on kind."""

    def status(self) -> pd.DataFrame:
        """One row per member: member, pid, port, state, log, and ``started`` (a UTC Timestamp: when
        the running incarnation started, None when it is not running: a pid alone names none)."""
