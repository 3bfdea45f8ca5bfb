"""The ``local`` runtime: real server processes on 127.0.0.1, no Docker needed.

State (ports, pids, passwords) and logs live under ``<state_dir>/local``; a second
Python process (the CLI, a notebook kernel) finds a running stack there and re-uses it.
"""

import signal as signals
from pathlib import Path
from typing import Any

import pandas as pd

from scalelab.errors import ScalelabError
from scalelab.paths import purge_scratch
from scalelab.plans import Plan
from scalelab.ports import free_port, port_busy
from scalelab.process import ProcessRecord
from scalelab.runtimes.common import nginx as common_nginx
from scalelab.runtimes.common import state
from scalelab.runtimes.common.members import no_member
from scalelab.runtimes.common.nginx import TlsEntry
from scalelab.runtimes.local import express as local_express
from scalelab.runtimes.local import green as local_green
from scalelab.runtimes.local import kafka as local_kafka
from scalelab.runtimes.local import nginx as local_nginx
from scalelab.runtimes.local import orders as local_orders
from scalelab.runtimes.local import projector as local_projector
from scalelab.runtimes.local import prometheus as local_prometheus
from scalelab.runtimes.local import rabbitmq as local_rabbitmq
from scalelab.runtimes.local import redis as local_redis
from scalelab.runtimes.local import standby as local_standby
from scalelab.runtimes.local import users as local_users
from scalelab.runtimes.local import worker as local_worker
from scalelab.runtimes.local.postgres import LocalPostgres, migrate
from scalelab.waiting import wait_until

# How to run each service as a process: a module with record(rt, name, port) -> ProcessRecord
# and ready(rt, rec) -> bool. Postgres is special (one primary, initdb, migrations).
# Optional: FRONTS = "<service>" (this one is that service's entry point: url() returns it),
# on_members_changed(rt, service), on_member_restarted(rt, member), reload(rt, rec),
# client_env(rt, service) -> extra environment for another service's members,
# preflight(rt): raise RuntimeUnavailable before anything starts (a missing binary).
SERVICES: dict[str, Any] = {"users": local_users, "redis": local_redis, "nginx": local_nginx, "standby": local_standby}
SERVICES.update({"orders": local_orders, "worker": local_worker})   # lab 05
SERVICES.update({"relay": local_projector.relay, "projector": local_projector})   # lab 08
SERVICES.update({"prometheus": local_prometheus})                  # lab 07
SERVICES.update({"rabbitmq": local_rabbitmq})                      # labs 05, 07, 08: the durable broker
SERVICES.update({"express": local_express})                        # lab 02: the user service in Node/Express
SERVICES.update({"green": local_green})                            # lab 06: the green colour (deploys)
SERVICES.update({"kafka": local_kafka})                            # lab 08: the event log on Kafka

STORES = ("postgres", "standby", "redis", "rabbitmq", "kafka")   # stopped last, after the services that use them
SIGNALS = {"KILL": signals.SIGKILL, "TERM": signals.SIGTERM, "INT": signals.SIGINT,
           "STOP": signals.SIGSTOP, "CONT": signals.SIGCONT}


class LocalRuntime:
    name = "local"

    def __init__(self, state_dir: Path):
        self.home = Path(state_dir) / "local"
        self.home.mkdir(parents=True, exist_ok=True)
        self._state_file = self.home / "state.json"
        self.lab: int | None = None
        self.workspace: Path | None = None
        self.procs: dict[str, ProcessRecord] = {}
        self._pg: LocalPostgres | None = None
        self._load()

    # -- persisted state ------------------------------------------------------
    def _load(self) -> None:
        self.lab, self.workspace, data = state.read(self._state_file)
        self.procs = {name: ProcessRecord.from_json(rec) for name, rec in data.get("procs", {}).items()}

    def _save(self) -> None:
        state.write(self._state_file, self.lab, self.workspace,
                    lambda: {"procs": {name: rec.to_json() for name, rec in list(self.procs.items())}})

    @property
    def pg(self) -> LocalPostgres:
        if self._pg is None:
            self._pg = LocalPostgres(self.home / "postgres")
        return self._pg

    # -- the protocol -------------------------------------------------------------
    def running_lab(self) -> int | None:
        return self.lab if any(rec.alive() for rec in self.procs.values()) else None

    def up(self, plan: Plan, workspace: Path) -> bool:
        if self.running_lab() not in (None, plan.lab):
            self.down()
        self.lab, self.workspace = plan.lab, workspace
        for service, replicas in plan.replicas.items():   # a missing binary fails the stack before anything starts
            if replicas:
                self._preflight(service)
        started = False
        if plan.has("postgres"):
            started |= self._ensure_postgres()
        for service, replicas in plan.replicas.items():
            if service == "postgres":
                continue
            started |= self._ensure_members(service, range(1, replicas + 1))
        self._save()
        return started

    def down(self) -> None:
        # Entry points first, then apps, then stores: nothing is cut off mid-request.
        order = sorted(self.procs.values(), key=lambda rec: (not self._is_front(rec.name),
                                                             rec.name.startswith(STORES)))
        for rec in order:
            rec.stop()
        self.procs.clear()
        self.lab = None
        self._save()

    def url(self, service: str) -> str:
        """The service's public entry point: the service in front of it when one runs (nginx)."""
        service = next((front for front, module in SERVICES.items()
                        if getattr(module, "FRONTS", None) == service and self.members(front)), service)
        members = self.members(service)
        if not members:
            raise ScalelabError(f"no {service} in this stack — is it up? (`stack.up()`)")
        return self.member_url(members[0])

    def member_url(self, member: str) -> str:
        return f"http://127.0.0.1:{self._record(member).port}"

    def tls_entry(self) -> TlsEntry:
        """nginx's HTTPS and the plain port that redirects to it (lab 02)."""
        members = self.members("nginx")
        if not members:
            raise ScalelabError("no nginx in this stack — is it up? (`stack.up()`)")
        return local_nginx.tls_entry(self, self._record(members[0]))

    def inside_url(self, service: str) -> str:
        """How the stack's own processes reach ``service``: on this host, the same URL as yours."""
        return self.url(service)

    def database_url(self, role: str = "app", member: str | None = None) -> str:
        """The primary's DSN, or a standby's (``member="standby-1"``, lab 04): same roles, same passwords."""
        port = self._record(member or "postgres").port
        assert port is not None   # Postgres' records are made with their port (LocalPostgres.process)
        return self.pg.dsn(port, role)

    # -- lab 04: standbys made by base backup (runtimes/local/standby.py) ----------------
    def configure_replication(self, config) -> dict:
        return local_standby.configure(self, config)

    def rebuild_standby(self, member: str) -> float:
        return local_standby.rebuild(self, member)

    # -- lab 07: Prometheus' alert rules (runtimes/local/prometheus.py) ---------------------
    def check_alert_rules(self, path: Path) -> str | None:
        return local_prometheus.check_rules(path)

    def install_alert_rules(self, path: Path | None) -> None:
        local_prometheus.install_rules(self, path)

    def redis_url(self) -> str:
        return local_redis.url(self, self._record("redis-1"))

    def rabbitmq_url(self) -> str:
        return local_rabbitmq.url(self, self._record("rabbitmq-1"))

    def kafka_bootstrap(self) -> str:
        return local_kafka.bootstrap(self)

    def reconnect_event_log(self) -> None:
        """Restart the relay and the projector: their new processes get SHOP_KAFKA_BOOTSTRAP while
        a broker runs (local_kafka.client_env), none otherwise."""
        for service in local_kafka.CLIENTS:
            for member in self.members(service):
                self._restart(member, stop_first=True)

    def members(self, service: str) -> list[str]:
        names = [n for n in self.procs if n == service or n.startswith(service + "-")]
        return sorted(names, key=lambda n: int(n.rsplit("-", 1)[1]) if n.rsplit("-", 1)[-1].isdigit() else 0)

    def scale(self, service: str, replicas: int) -> None:
        if service == "postgres":
            raise ScalelabError("postgres is not scaled with scale(): it has one primary")
        if replicas < 0:
            raise ScalelabError(f"replicas must be >= 0, got {replicas}")
        current = self.members(service)
        if replicas > len(current):
            self._preflight(service)
        self._ensure_members(service, range(1, replicas + 1))
        # Scaling in: take members out of rotation first (reload), then stop them.
        removed = [self.procs.pop(name) for name in current[replicas:]]
        self._save()
        self._members_changed(service)
        for rec in removed:
            rec.stop()
        self._save()

    def _preflight(self, service: str) -> None:
        getattr(SERVICES.get(service), "preflight", lambda rt: None)(self)

    def _members_changed(self, service: str, restarted: str | None = None) -> None:
        """Tell the other services (e.g. a load balancer) that ``service``'s members changed,
        or that member ``restarted`` is back (it may have a new port)."""
        hook = "on_member_restarted" if restarted else "on_members_changed"
        for other, module in SERVICES.items():
            if other != service and self.members(other) and hasattr(module, hook):
                getattr(module, hook)(self, restarted or service)

    def _is_front(self, member: str) -> bool:
        return hasattr(SERVICES.get(member.rsplit("-", 1)[0]), "FRONTS")

    def reload(self, service: str) -> None:
        """Re-read configuration without dropping connections where the service can
        (nginx: ``nginx -s reload``); otherwise restart its members one by one."""
        module: Any = SERVICES.get(service)   # None (no such service) has no reload either
        for member in self.members(service):
            if hasattr(module, "reload"):
                module.reload(self, self._record(member))
            else:
                self._restart(member, stop_first=True)
        self._save()

    def kill(self, member: str, signal: str = "KILL") -> None:
        if signal not in SIGNALS:
            raise ScalelabError(f"unknown signal {signal!r}: use one of {', '.join(SIGNALS)}")
        rec = self._record(member)
        sig = SIGNALS[signal]
        if sig in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT):
            rec.stop(sig)   # waits for the exit, then clears what is left of its group
        else:
            rec.signal(sig)
        self._save()

    def start(self, member: str) -> None:
        self._restart(member, stop_first=False)

    def restart(self, member: str) -> None:
        self._restart(member, stop_first=True)

    def _restart(self, member: str, stop_first: bool) -> None:
        rec = self._record(member)
        if stop_first:
            rec.stop()
        if member == "postgres":
            self._ensure_postgres()
        else:
            service, index = member.rsplit("-", 1)
            self._ensure_member(service, int(index))
            self._save()
            self._members_changed(service, restarted=member)
        self._save()

    def route(self, shares: dict[str, int] | None) -> None:
        common_nginx.route(self, shares)

    def logs(self, member: str, tail: int = 40) -> str:
        return self._record(member).log_tail(tail)

    def status(self) -> pd.DataFrame:
        rows = []
        for rec in self.procs.values():
            alive = rec.alive()
            rows.append({"member": rec.name, "pid": rec.pid, "port": rec.port,
                         "state": "running" if alive else "stopped", "log": rec.log,
                         "started": pd.Timestamp(rec.started_at, unit="s", tz="UTC") if alive else None})
        return pd.DataFrame(rows, columns=["member", "pid", "port", "state", "log", "started"])

    # -- lab 06: CPU readings and the model autoscaler (scalelab/autoscaler.py) ---------------
    def cpu_seconds(self, member: str) -> float:
        """CPU time (user + system, seconds) the member's process tree has used since it started."""
        import psutil
        proc = self._record(member).process()
        if proc is None:
            raise ScalelabError(f"{member} is not running")
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                times = p.cpu_times()
                total += times.user + times.system
            except psutil.Error:      # a child that just exited
                pass
        return total

    def autoscaler(self, spec, desired_replicas):
        """No Kubernetes here: the driver's model of the HPA controller scales the processes."""
        from scalelab.autoscaler import ModelAutoscaler
        return ModelAutoscaler(self, spec, desired_replicas)

    # -- members ---------------------------------------------------------------------
    def _record(self, member: str) -> ProcessRecord:
        try:
            return self.procs[member]
        except KeyError as exc:
            raise no_member(member, self.procs) from exc

    def _ensure_postgres(self) -> bool:
        rec = self.procs.get("postgres")
        if rec is not None and rec.alive():
            return False
        self.pg.initdb()
        port = rec.port if rec is not None and rec.port is not None and not port_busy(rec.port) else free_port()
        rec = self.pg.process("postgres", port, str(self.home / "logs/postgres.log"))
        self.procs["postgres"] = rec
        self._start(rec)
        self.pg.create_app_database(port)   # rec.port: LocalPostgres.process keeps it
        migrate(self.pg.dsn(port, "app"))
        return True

    def _ensure_member(self, service: str, index: int) -> bool:
        return self._ensure_members(service, [index])

    def _ensure_members(self, service: str, indexes) -> bool:
        """Members ``indexes`` of ``service`` running and ready; True when any was started. The
        missing ones start together, then each is waited for (four workers boot in the time of one)."""
        started = []
        for index in indexes:
            name = f"{service}-{index}"
            rec = self.procs.get(name)
            if rec is not None and rec.alive():
                continue
            port = self._port_again(rec) if rec is not None else free_port()
            rec = self.procs[name] = self._service_record(service, name, port)
            rec.start()
            started.append(rec)
        self._save()   # another process (the CLI's down) finds them even if one never gets ready
        for rec in started:
            self._wait_ready(rec)
        return bool(started)

    @staticmethod
    def _port_again(rec: ProcessRecord, wait_s: float = 20.0) -> int:
        """A restarted member keeps its port: its clients hold that address (the order service its
        broker's URL) and would knock on the old one forever. A port still held — the killed
        process's sockets not closed yet on a busy machine — is waited for; only one taken for
        good (after ``wait_s``) is traded for a new one."""
        if rec.port is None:
            return free_port()
        port = rec.port
        return port if wait_until(lambda: not port_busy(port), wait_s, interval=0.1) else free_port()

    def _service_record(self, service: str, name: str, port: int) -> ProcessRecord:
        if service not in SERVICES:
            raise ScalelabError(f"the local runtime does not know how to run {service!r} yet")
        rec = SERVICES[service].record(self, name, port)
        for other, module in SERVICES.items():   # e.g. a standby gives the user service its DSN
            if other != service and hasattr(module, "client_env"):
                rec.env.update(module.client_env(self, service))
        return rec

    def _start(self, rec: ProcessRecord) -> None:
        rec.start()
        self._wait_ready(rec)

    def _wait_ready(self, rec: ProcessRecord) -> None:
        if rec.name == "postgres":
            port = rec.port
            assert port is not None   # LocalPostgres.process sets it
            rec.wait_ready(lambda: self.pg.accepts_connections(port), timeout=60, what="accepting connections")
        else:
            module = SERVICES[rec.name.rsplit("-", 1)[0]]
            rec.wait_ready(lambda: module.ready(self, rec), timeout=60, what="ready")

    def wipe(self) -> None:
        """Delete the database cluster, its passwords, Prometheus' stored series, RabbitMQ's and
        Redis' data, the logs and any scratch dirs (stack down)."""
        import shutil
        self.pg.remove_data()
        purge_scratch(self.home)
        shutil.rmtree(self.home / "postgres", ignore_errors=True)
        shutil.rmtree(local_standby.home(self), ignore_errors=True)
        shutil.rmtree(self.home / "prometheus", ignore_errors=True)   # lab 07: its TSDB and rule files
        shutil.rmtree(self.home / "rabbitmq", ignore_errors=True)     # its queues and messages, cookie, password
        shutil.rmtree(self.home / "kafka", ignore_errors=True)        # lab 08: the topics, offsets, cluster id
        shutil.rmtree(self.home / "redis", ignore_errors=True)        # the append-only file (broker.yaml), password
        shutil.rmtree(self.home / "logs", ignore_errors=True)
        self._pg = None
