"""``Stack``: the one object a notebook holds.

    stack = Stack(lab=1).up()          # idempotent: re-uses a stack that already runs
    stack.url("users")                 # http://127.0.0.1:PORT
    stack.scale("users", 3); stack.kill("users-2"); stack.logs("users-1")
    stack.down()                       # also on interpreter exit, for what this process started
"""

import atexit
import shutil
from pathlib import Path
from typing import cast

import pandas as pd

from scalelab.errors import ScalelabError
from scalelab.paths import default_state_dir
from scalelab.plans import Plan, plan_for, require_runtime
from scalelab.runtimes import get_runtime, runtimes_with
from scalelab.runtimes.base import CAPABILITIES, Wipe, has_capability


class Stack:
    def __init__(self, lab: int = 1, runtime: str = "local", state_dir: str | Path | None = None,
                 detach: bool = False):
        """``detach=True`` leaves the stack running when this process exits (``make lab-N``)."""
        self.plan: Plan = plan_for(lab)
        self.lab = self.plan.lab
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        require_runtime(self.plan, runtime)
        self.runtime = get_runtime(runtime, self.state_dir)
        self.detach = detach
        self._owns = False

    # -- lifecycle ---------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        """Where exercise cells write the code the stack runs (git-ignored)."""
        path = self.state_dir / "workspace" / f"lab{self.lab:02d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def up(self) -> "Stack":
        # (imported here: the CLI's down and status then load none of the services' code, 2 s less)
        from scalelab import broker
        broker.validate(self.plan, self.workspace)   # a bad broker.yaml: one line naming the setting, nothing started
        fresh = self.runtime.running_lab() is None
        self.runtime.route(None)      # a split a past run left (lab 06) does not outlive it
        try:
            started = self.runtime.up(self.plan, self.workspace)
        except BaseException:
            if fresh:             # what this call started before the failure: stopped, nothing left half-up
                self._stop_after_failed_start()
            raise
        if started and not self.detach and not self._owns:
            self._owns = True
            atexit.register(self._down_at_exit)
        return self

    def down(self, purge: bool = False) -> None:
        """Stop everything the stack runs. Safe to call twice.
        ``purge=True`` also deletes its data (database, logs, scratch dirs)."""
        self.runtime.down()
        self.runtime.route(None)
        self._owns = False
        if purge and self.supports("wipe"):          # runtimes whose down() keeps data have one
            cast(Wipe, self.runtime).wipe()

    def reset(self) -> "Stack":
        """Back to the lab's starting state: stop, wipe data and this lab's workspace, start."""
        self.down(purge=True)
        shutil.rmtree(self.workspace, ignore_errors=True)
        return self.up()

    def _stop_after_failed_start(self) -> None:
        try:
            self.runtime.down()
        except Exception:                            # noqa: BLE001 — the start's own error is the one to see
            pass

    def _down_at_exit(self) -> None:
        if self._owns:
            self.down()

    def __enter__(self) -> "Stack":
        return self.up()

    def __exit__(self, *exc) -> None:
        if not self.detach:
            self.down()

    # -- endpoints and members -------------------------------------------------
    def url(self, service: str = "users") -> str:
        return self.runtime.url(service)

    def member_url(self, member: str) -> str:
        return self.runtime.member_url(member)

    def inside_url(self, service: str = "users") -> str:
        """How the stack's own members reach ``service`` (lab 07: the order service calls the user
        service through nginx): ``url()`` on local; the name on the Compose network on compose."""
        return self._capable("inside_url").inside_url(service)

    def database_url(self, role: str = "app", member: str | None = None) -> str:
        """The lab database's DSN: the primary's, or a standby's with ``member="standby-1"`` (lab 04)."""
        if member is None:
            return self.runtime.database_url(role)
        return self._capable("replication").database_url(role, member=member)

    # -- lab 04: replication -----------------------------------------------------
    def configure_replication(self, config) -> dict:
        """Apply ``config``'s primary side (settings, replication role, pg_hba line) to the
        running primary. ``config`` is the replication exercise's module (or the reference)."""
        return self._capable("replication").configure_replication(config)

    def rebuild_standby(self, member: str = "standby-1") -> float:
        """Stop ``member``, make it again by base backup of the primary, start it; seconds taken."""
        return self._capable("replication").rebuild_standby(member)

    def redis_url(self) -> str:
        return self.runtime.redis_url()

    def rabbitmq_url(self) -> str:
        """``amqp://USER:PASSWORD@HOST:PORT//`` of the stack's RabbitMQ (labs 05, 07, 08)."""
        return self._capable("rabbitmq").rabbitmq_url()

    def kafka_bootstrap(self) -> str:
        """``HOST:PORT`` of the stack's Kafka broker (lab 08, once ``lab08.use_kafka`` started it)."""
        return self._capable("kafka").kafka_bootstrap()

    def reconnect_event_log(self) -> None:
        """Restart the relay and the projector onto the log the stack has now (lab 08: the Kafka
        topic while a broker runs)."""
        self._capable("kafka").reconnect_event_log()

    def members(self, service: str = "users") -> list[str]:
        return self.runtime.members(service)

    # -- changing the running stack ---------------------------------------------
    def scale(self, service: str, replicas: int) -> "Stack":
        self.runtime.scale(service, replicas)
        return self

    def kill(self, member: str, signal: str = "KILL") -> None:
        self.runtime.kill(member, signal)

    def start(self, member: str) -> None:
        self.runtime.start(member)

    def restart(self, member_or_service: str) -> None:
        """Restart one member, or every member of a service one by one (rolling)."""
        members = self.runtime.members(member_or_service) if "-" not in member_or_service else [member_or_service]
        for member in members or [member_or_service]:
            self.runtime.restart(member)

    def reload(self, service: str) -> None:
        """Make a service re-read its configuration (nginx: the upstream file) without
        dropping connections; fails with the service's own complaint if it rejects it."""
        self.runtime.reload(service)

    def logs(self, member: str, tail: int = 40) -> str:
        return self.runtime.logs(member, tail)

    def tool(self, name: str, *args: str, member: str | None = None, timeout: float = 60):
        """Run the real client ``name`` (psql, valkey-cli, nginx, celery, promtool, kubectl) against
        the live stack, wherever it runs: ``stack.tool("psql", "-c", "select 1")``. Shows the
        command and its output (a ``scalelab.tools.ToolRun``: ``.output``, ``.returncode``)."""
        from scalelab import tools
        return tools.run(self, name, *args, member=member, timeout=timeout)

    # -- lab 06: autoscaling -----------------------------------------------------------
    def autoscale(self, spec, desired_replicas):
        """An autoscaler for ``spec.service`` (``scalelab.autoscaler.HpaSpec``), not started yet:
        ``.start()``, ``.stop()``, ``.history()``. On local and compose it is the driver's MODEL of
        the HPA controller, calling ``desired_replicas``; on kind, Kubernetes' own HPA."""
        return self.runtime.autoscaler(spec, desired_replicas)

    # -- lab 06: deploys ---------------------------------------------------------------------
    def route(self, shares: dict[str, int] | None) -> "Stack":
        """Split the requests nginx sends between the services behind it, in percent:
        ``stack.route({"users": 90, "green": 10})`` (a canary), ``stack.route({"green": 100})``
        (blue-green's switch); ``None``: every member alike again. Within a service the members
        share alike. nginx reloads gracefully (no request dropped); returns when it is done."""
        if shares is not None:
            self._check_shares(shares)
            shares = {service: share for service, share in shares.items() if share}
        self.runtime.route(shares)
        return self

    def _check_shares(self, shares) -> None:
        from scalelab.runtimes.common.nginx import UPSTREAM
        behind = [service for service in UPSTREAM if self.plan.has(service)]
        if not self.plan.has("nginx"):
            raise ScalelabError(f"lab {self.lab} has no nginx to split requests")
        if not isinstance(shares, dict) or not shares:
            raise ScalelabError(f"route() takes {{service: percent}}, e.g. {{{behind[0]!r}: 100}}; got {shares!r}")
        for service, share in shares.items():
            if service not in behind:
                raise ScalelabError(f"route(): {service!r} is not behind this lab's nginx — "
                                    f"the services are {', '.join(behind)}")
            if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
                raise ScalelabError(f"route(): {service}'s share must be a whole percent from 0 to 100, got {share!r}")
        if sum(shares.values()) != 100:
            raise ScalelabError(f"route(): the shares add up to {sum(shares.values())} %, not 100 %: {shares}")
        for service, share in shares.items():
            if share and not self.members(service):
                raise ScalelabError(f"route(): {service} has no members to send {share} % to — "
                                    f"stack.scale({service!r}, 2) first")

    def tls_entry(self):
        """Lab 02: nginx's HTTPS URL, the plain-HTTP URL that redirects to it, and the CA file a
        client trusts (``httpx.Client(verify=str(entry.ca_file))``) — a ``TlsEntry``."""
        return self._capable("tls").tls_entry()

    def cpu_seconds(self, member: str) -> float:
        """Cumulative CPU time (seconds) a member has used: its processes, container or pod."""
        return self._capable("cpu_meter").cpu_seconds(member)

    # -- lab 06: Kubernetes objects --------------------------------------------------------
    def apply(self, objects: list[dict]) -> None:
        """Apply Kubernetes objects to the stack's cluster (runtimes with a Kubernetes API)."""
        self._capable("apply").apply(objects)

    @property
    def namespace(self) -> str:
        """The Kubernetes namespace the stack runs in (runtimes with a Kubernetes API)."""
        return self._capable("apply").namespace

    @property
    def image_tag(self) -> str | None:
        """The tag of the stack's images in the cluster (runtimes with a Kubernetes API)."""
        return self._capable("apply").tag

    # -- lab 07: alert rules ---------------------------------------------------------------
    def check_alert_rules(self, path: Path) -> str | None:
        """promtool's complaint about a rules file, None when it is valid."""
        return self._capable("alert_rules").check_alert_rules(path)

    def install_alert_rules(self, path: Path | None) -> None:
        """Load a rules file (None: no rules) into the stack's Prometheus and reload it."""
        self._capable("alert_rules").install_alert_rules(path)

    def status(self) -> pd.DataFrame:
        return self.runtime.status()

    # -- capabilities: where a runtime lacks one, one line says so ------------------------------
    @property
    def runtime_name(self) -> str:
        return self.runtime.name

    def supports(self, capability: str) -> bool:
        """Whether this stack's runtime has ``capability`` (a name of ``runtimes.base.CAPABILITIES``)."""
        return has_capability(self.runtime, capability)

    def _capable(self, capability: str):
        """The runtime, when it has ``capability``; else ScalelabError in one line naming who has it."""
        if not self.supports(capability):
            others = " or ".join(f'runtime="{name}"' for name in runtimes_with(capability) if name != self.runtime.name)
            raise ScalelabError(f"no {CAPABILITIES[capability][1]} on the {self.runtime.name} runtime"
                                + (f" — use {others}" if others else ""))
        return self.runtime

    def __repr__(self) -> str:
        return f"Stack(lab={self.lab}, runtime={self.runtime.name!r}, state_dir='{self.state_dir}')"
