"""The seam between the labs and where the stack runs: a core protocol plus capabilities.

Everything outside ``runtimes/`` talks to a runtime only through ``Stack``; no lab or check
knows which runtime is active. ``Runtime`` is what every runtime does. A capability (a standby
to replicate to, alert rules, ...) is a small protocol of its own that some runtimes have:
``Stack`` asks ``has_capability`` in one place and, where the runtime lacks it, says so in one
line naming the runtimes that have it. ``tests/test_runtime_seam.py`` holds every runtime to this.
"""

from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from scalelab.plans import Plan


class Runtime(Protocol):
    """The core: what every runtime does."""

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
        on the primary, or on a standby member (``member="standby-1"``, runtimes with ``Replication``)."""

    def redis_url(self) -> str:
        """``redis://:PASSWORD@HOST:PORT/0`` of the stack's Redis (labs 03+)."""

    def members(self, service: str) -> list[str]:
        """Names of a service's members, e.g. ``["users-1", "users-2"]``."""

    def member_url(self, member: str) -> str:
        """Base URL of one member, bypassing any load balancer."""

    def scale(self, service: str, replicas: int) -> None:
        """Run ``replicas`` members of ``service``; scaling in takes members out of rotation first."""

    def kill(self, member: str, signal: str = "KILL") -> None:
        """Send ``signal`` (KILL, TERM, INT; STOP freezes) to a member; it stays down until ``start``."""

    def start(self, member: str) -> None:
        """Start a stopped or killed member again, and wait until it is ready."""

    def restart(self, member: str) -> None:
        """Graceful stop (SIGTERM), then start, waiting until ready."""

    def reload(self, service: str) -> None:
        """Re-read configuration (e.g. ``nginx -s reload``) without dropping connections."""

    def route(self, shares: dict[str, int] | None) -> None:
        """Split the requests nginx sends between the services behind it (service -> percent),
        nginx reloaded gracefully; None: every member alike (lab 06: blue-green and canary)."""

    def logs(self, member: str, tail: int = 40) -> str:
        """The last ``tail`` lines a member wrote."""

    def autoscaler(self, spec, desired_replicas):
        """An ``scalelab.autoscaler.Autoscaler`` for ``spec`` (lab 06): the driver's model of the
        HPA controller where there is no Kubernetes, the real HPA on kind."""

    def status(self) -> pd.DataFrame:
        """One row per member: member, pid, port, state, log, and ``started`` (a UTC Timestamp: when
        the running incarnation started, None when it is not running: a pid alone names none)."""


# -- capabilities: a runtime has one when it has every method of its protocol ---------------------
@runtime_checkable
class Replication(Protocol):
    """Lab 04: a hot standby of the primary."""

    def configure_replication(self, config) -> dict:
        """Apply ``config``'s primary side of streaming replication to the running primary."""

    def rebuild_standby(self, member: str) -> float:
        """A fresh base backup of the primary, started as ``member``; seconds taken."""


@runtime_checkable
class AlertRules(Protocol):
    """Lab 07: the stack's Prometheus evaluates the learner's alert rules."""

    def check_alert_rules(self, path: Path) -> str | None:
        """promtool's complaint about a rules file, None when it is valid."""

    def install_alert_rules(self, path: Path | None) -> None:
        """Load ``path`` (None: no rules) into the stack's Prometheus and reload it."""


@runtime_checkable
class InsideUrl(Protocol):
    """How the stack's own members reach a service (lab 07: orders call users through nginx)."""

    def inside_url(self, service: str) -> str: ...


@runtime_checkable
class CpuMeter(Protocol):
    """CPU time a member used (lab 06's model autoscaler, lab 05's workers)."""

    def cpu_seconds(self, member: str) -> float: ...


@runtime_checkable
class RabbitMQ(Protocol):
    """The stack's RabbitMQ (labs 05, 07, 08)."""

    def rabbitmq_url(self) -> str:
        """``amqp://USER:PASSWORD@HOST:PORT//``."""


@runtime_checkable
class KafkaLog(Protocol):
    """Lab 08: a Kafka broker the stack can run as a member (``kafka-1``) for its event log."""

    def kafka_bootstrap(self) -> str:
        """``HOST:PORT`` of the running broker, as a client outside the stack dials it."""

    def reconnect_event_log(self) -> None:
        """Restart the relay and the projector onto the log the stack has now (the topic while a
        broker runs, the Redis Stream otherwise)."""


@runtime_checkable
class ApplyObjects(Protocol):
    """A Kubernetes API to apply objects to (lab 06), in the stack's namespace, its images under ``tag``."""

    namespace: str
    tag: str | None

    def apply(self, objects: list[dict], dry_run: bool = False, field_manager: str | None = None) -> None: ...


@runtime_checkable
class TlsEdge(Protocol):
    """Lab 02: nginx serves HTTPS with the stack's own CA, and a plain port redirects to it."""

    def tls_entry(self): ...


class Wipe(Protocol):
    """``down(purge=True)`` also deletes data that ``down()`` keeps."""

    def wipe(self) -> None: ...


# name -> (protocol, what a runtime without it has not: "no <what> on the X runtime")
CAPABILITIES: dict[str, tuple[type, str]] = {
    "replication": (Replication, "standby"),
    "alert_rules": (AlertRules, "Prometheus alert rules"),
    "inside_url": (InsideUrl, "inside URL"),
    "cpu_meter": (CpuMeter, "CPU meter"),
    "rabbitmq": (RabbitMQ, "RabbitMQ"),
    "kafka": (KafkaLog, "Kafka broker"),
    "apply": (ApplyObjects, "Kubernetes API to apply objects to"),
    "wipe": (Wipe, "data kept after down()"),
    "tls": (TlsEdge, "HTTPS at nginx (TLS at the edge)"),
}


def protocol_methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]


def has_capability(runtime, capability: str) -> bool:
    """True when ``runtime`` (an instance or a class) has every method of the capability's protocol."""
    protocol, _ = CAPABILITIES[capability]
    return all(callable(getattr(runtime, method, None)) for method in protocol_methods(protocol))
