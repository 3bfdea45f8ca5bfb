"""The ``compose`` runtime: the stack as Docker containers, from ``stack/deploy/compose.yaml``.

Same members, same protocol as ``local`` (``postgres``, ``users-1``..N, ``redis-1``,
``rabbitmq-1``, ``nginx-1``, ``orders-1``, ``worker-1``..N, ``relay-1``, ``projector-1``): a member is one
Compose container (service + replica number). The driver runs
``docker compose`` for what Compose does well (create the project, scale a service, tear it
all down) and the docker SDK for one container at a time (kill, pause, start, logs, ports).
Every port is published on 127.0.0.1 and discovered from the engine; readiness is probed
(SQL, HTTP, PING) on those ports, never slept for.

State (project name, lab, workspace) lives in ``<state_dir>/compose``; a second Python
process (the CLI, a notebook kernel) finds the running project there and re-uses it.
"""

import hashlib
import json
from pathlib import Path

import httpx
import pandas as pd

from scalelab import aio, kafka_broker
from scalelab.errors import RuntimeUnavailable, ScalelabError, ServiceFailed
from scalelab.plans import Plan, plan_for
from scalelab.ports import free_port
from scalelab.runtimes.common import images as compose_images
from scalelab.runtimes.common import nginx as common_nginx
from scalelab.runtimes.common import state
from scalelab.runtimes.common.engine import Compose, connect
from scalelab.runtimes.common.members import no_member
from scalelab.runtimes.common.nginx import UPSTREAM, TlsEntry, carries_traffic, wait_until_routed
from scalelab.runtimes.compose import env as compose_env
from scalelab.runtimes.compose import nginx as compose_nginx
from scalelab.runtimes.compose import prometheus as compose_prometheus
from scalelab.runtimes.compose import queue as compose_queue
from scalelab.runtimes.compose import standby as compose_standby
from scalelab.runtimes.local import rabbitmq as local_rabbitmq
from scalelab.waiting import wait_until

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
FILES = [DEPLOY / "compose.yaml", DEPLOY / "compose.lab.yaml"]
# Each service's port inside its containers. Standbys (lab 04+: compose_standby), the order
# service, the Celery workers (their metrics port) and Prometheus (lab 07: compose_prometheus);
# the relay and the projector (labs 05, 08) listen on nothing.
PORTS = {"postgres": 5432, "standby": 5432, "users": 8000, "redis": 6379, "nginx": 8080,
         "orders": 8000, "worker": 9100, "relay": None, "projector": None, "prometheus": 9090, "rabbitmq": 5672,
         "express": 8000, "green": 8000, "kafka": 9094}
# compose.yaml publishes each service on 127.0.0.1:${<VAR>}: the driver creates every
# container with its own free host port, fixed, so a restarted member keeps its URL (as on local).
PORT_VARS = {"postgres": "POSTGRES_PORT", "standby": "STANDBY_PORT", "users": "USERS_PORT", "redis": "REDIS_PORT",
             "nginx": "NGINX_PORT", "orders": "ORDERS_PORT", "worker": "WORKER_PORT",
             "prometheus": "PROMETHEUS_PORT", "rabbitmq": "RABBITMQ_PORT", "express": "EXPRESS_PORT",
             "green": "GREEN_PORT", "kafka": "KAFKA_PORT"}
EXTRA_PORT_VARS = {"nginx": ("NGINX_TLS_PORT", "NGINX_REDIRECT_PORT")}   # lab 02's HTTPS and its redirect
FRONTS = {"nginx": "users"}          # while nginx runs, url("users") is nginx's URL
STORES = ("postgres", "redis", "rabbitmq", "kafka")
READY_TIMEOUT = 90.0
SIGNALS = ("KILL", "TERM", "INT", "STOP", "CONT")


class ComposeRuntime:
    name = "compose"

    def __init__(self, state_dir: Path):
        self.client = connect()   # RuntimeUnavailable (one line, naming the fix) without an engine
        self.home = Path(state_dir).resolve() / "compose"
        self.home.mkdir(parents=True, exist_ok=True)
        self.project = "scalelab-" + hashlib.sha1(str(self.home).encode()).hexdigest()[:8]
        self._state_file = self.home / "state.json"
        self.lab: int | None = None
        self.workspace: Path | None = None
        self.tag: str | None = None
        self._load()

    # -- persisted state ----------------------------------------------------------------
    def _load(self) -> None:
        self.lab, self.workspace, data = state.read(self._state_file)
        self.tag = data.get("tag")

    def _save(self) -> None:
        state.write(self._state_file, self.lab, self.workspace, lambda: {"tag": self.tag, "project": self.project})

    def _compose(self) -> Compose:
        plan = plan_for(self.lab) if self.lab else None
        env_file = compose_env.compose_env(self.home, self.tag or "dev", self.workspace,
                                           compose_nginx.conf_dir(self), kafka_tag=compose_images.kafka_tag())
        compose_env.shop_env(self.home, plan, kafka=bool(self._containers("kafka")))
        compose_env.valkey_conf(self.home, plan, self.workspace)
        return Compose(self.project, FILES, env_file, self.home / "compose.log")

    # -- containers and members ----------------------------------------------------------
    def _containers(self, service: str | None = None) -> list:
        labels = [f"com.docker.compose.project={self.project}", "com.docker.compose.oneoff=False"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        found = self.client.containers.list(all=True, filters={"label": labels})
        return sorted(found, key=lambda c: (c.labels["com.docker.compose.service"],
                                            int(c.labels.get("com.docker.compose.container-number", 0))))

    @staticmethod
    def _member_name(container) -> str | None:
        service = container.labels["com.docker.compose.service"]
        if service not in PORTS:
            return None                       # the one-shot migrate container is no member
        if service == "postgres":
            return "postgres"
        return f"{service}-{container.labels.get('com.docker.compose.container-number', '1')}"

    def _container(self, member: str):
        for container in self._containers():
            if self._member_name(container) == member:
                return container
        raise no_member(member, [m for c in self._containers() if (m := self._member_name(c))])

    @staticmethod
    def _service(member: str) -> str:
        return "postgres" if member == "postgres" else member.rsplit("-", 1)[0]

    def _host_port(self, member: str) -> int:
        port = self._published_port(self._container(member), member)
        if port is None:
            raise ScalelabError(f"{member} has no published port: is it running? (stack.start({member!r}))")
        return port

    def _published_port(self, container, member: str) -> int | None:
        """The host port (on 127.0.0.1) of the member's service port; fixed at creation."""
        port = PORTS[self._service(member)]
        if port is None:
            return None                       # relay, projector: they listen on nothing
        return compose_nginx.published(container, port)

    def address(self, member: str) -> str | None:
        """The member's IP address on the Compose network (None when it never ran)."""
        networks = self._container(member).attrs["NetworkSettings"]["Networks"] or {}
        addresses = [net.get("IPAddress") for net in networks.values() if net.get("IPAddress")]
        return addresses[0] if addresses else self._last_addresses().get(member)

    def _last_addresses(self) -> dict[str, str]:
        path = self.home / "addresses.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _remember_addresses(self) -> None:
        """A stopped container has no address; nginx keeps the last one (as local keeps a port)."""
        known = self._last_addresses()
        for container in self._containers():
            for net in (container.attrs["NetworkSettings"]["Networks"] or {}).values():
                if net.get("IPAddress") and (member := self._member_name(container)):
                    known[member] = net["IPAddress"]
        (self.home / "addresses.json").write_text(json.dumps(known))

    # -- the protocol -----------------------------------------------------------------------
    def running_lab(self) -> int | None:
        running = any(c.status == "running" for c in self._containers())
        return self.lab if running else None

    def up(self, plan: Plan, workspace: Path) -> bool:
        if self.running_lab() not in (None, plan.lab):
            self.down()
        self.lab, self.workspace = plan.lab, Path(workspace).resolve()
        self.tag = compose_images.ensure(self.client, self.home / "build.log")
        self._save()
        compose = self._compose()
        started = False
        # Stores first, then migrations, then the apps, then what fronts them.
        for service in sorted(plan.replicas, key=lambda s: (s not in STORES, s in FRONTS)):
            started_now = self._ensure_service(compose, service, plan.replicas[service])
            if started_now and service == "postgres":
                out = compose.run("run", "--rm", "--no-deps", "migrate", timeout=180, check=False)
                if out.returncode != 0:
                    raise ServiceFailed(f"migrations failed: {(out.stderr or out.stdout).strip()[-800:]}")
            started |= started_now
        self._save()
        return started

    def _ensure_service(self, compose: Compose, service: str, replicas: int) -> bool:
        """Members 1..replicas of ``service`` running and ready; True when any was started."""
        if service in ("standby", "prometheus"):   # a base backup first; a rendered configuration first
            return {"standby": compose_standby, "prometheus": compose_prometheus}[service].ensure(self, compose,
                                                                                                 replicas)
        if service == "kafka":     # lab 08: its image is built on demand, from make tools-kafka's jars
            compose_images.ensure_kafka(self.client, self.home / "build.log")
        containers = self._containers(service)
        to_start = [c for c in containers[:replicas] if c.status not in ("running", "paused")]
        for container in to_start:      # stopped or killed members come back as they were
            member = self._member_name(container)
            assert member is not None   # a plan's services are all in PORTS: each container is a member
            self._before_start(member)
            container.start()
        if service == "nginx" and not containers:
            compose_nginx.write_bootstrap(self)
        for index in range(len(containers) + 1, replicas + 1):
            # One container per call, each with its own free host port (kept across restarts).
            self._before_start(f"{service}-{index}")
            port_vars = (PORT_VARS.get(service), *EXTRA_PORT_VARS.get(service, ()))
            ports = {var: str(free_port()) for var in port_vars if var}
            compose.run("up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={index}", service,
                        env=ports or None)
        if not to_start and len(containers) >= replicas:
            return False
        for member in self.members(service)[:replicas]:
            self._wait_ready(member)
        self._remember_addresses()
        if service == "nginx":
            for member in self.members("nginx"):
                self._reload_nginx(member, strict=False)
        else:
            self._members_changed(service)
        return True

    def down(self) -> None:
        """Remove every container, network and volume of this project. Safe to call twice."""
        labels = {"label": f"com.docker.compose.project={self.project}"}
        if (self.client.containers.list(all=True, filters=labels) or self.client.networks.list(filters=labels)
                or self.client.volumes.list(filters=labels)):
            self._compose().run("down", "--volumes", "--remove-orphans", "--timeout", "15", timeout=180)
        # What Compose did not remove (e.g. a container it no longer knows) goes too.
        for container in self.client.containers.list(all=True, filters=labels):
            container.remove(force=True, v=True)
        for network in self.client.networks.list(filters=labels):
            network.remove()
        for volume in self.client.volumes.list(filters=labels):
            volume.remove(force=True)
        (self.home / "addresses.json").unlink(missing_ok=True)
        self.lab = None
        self._save()

    def _front(self, service: str) -> str:
        """The service that fronts ``service`` while it runs (nginx for users), else ``service``."""
        return next((front for front, fronted in FRONTS.items() if fronted == service and self.members(front)),
                    service)

    def url(self, service: str) -> str:
        service = self._front(service)
        members = self.members(service)
        if not members:
            raise ScalelabError(f"no {service} in this stack — is it up? (`stack.up()`)")
        return self.member_url(members[0])

    def member_url(self, member: str) -> str:
        return f"http://127.0.0.1:{self._host_port(member)}"

    def tls_entry(self) -> TlsEntry:
        """nginx's HTTPS and the plain port that redirects to it, on 127.0.0.1 (lab 02)."""
        members = self.members("nginx")
        if not members:
            raise ScalelabError("no nginx in this stack — is it up? (`stack.up()`)")
        return compose_nginx.tls_entry(self, self._container(members[0]))

    def inside_url(self, service: str) -> str:
        """How the stack's own containers reach ``service``: its front's name on the Compose network."""
        front = self._front(service)
        return f"http://{front}:{PORTS[front]}"

    def database_url(self, role: str = "app", member: str | None = None) -> str:
        """The primary's DSN, or a standby's (``member="standby-1"``, lab 04): same roles, same passwords."""
        pw = compose_env.passwords(self.home)
        port = self._host_port(member or "postgres")
        if role == "app":
            return f"postgresql://shop:{pw['shop']}@127.0.0.1:{port}/shop"
        return f"postgresql://postgres:{pw['postgres']}@127.0.0.1:{port}/postgres"

    # -- lab 04: standbys made by base backup (runtimes/compose/standby.py) ----------------
    def configure_replication(self, config) -> dict:
        return compose_standby.configure(self, config)

    def rebuild_standby(self, member: str) -> float:
        return compose_standby.rebuild(self, member)

    # -- lab 07: Prometheus' alert rules (runtimes/compose/prometheus.py) --------------------
    def check_alert_rules(self, path: Path) -> str | None:
        return compose_prometheus.check_rules(self, path)

    def install_alert_rules(self, path: Path | None) -> None:
        compose_prometheus.install_rules(self, path)

    def redis_url(self) -> str:
        return f"redis://:{compose_env.passwords(self.home)['redis']}@127.0.0.1:{self._host_port('redis-1')}/0"

    def rabbitmq_url(self) -> str:
        return f"amqp://shop:{compose_env.passwords(self.home)['rabbitmq']}@127.0.0.1:{self._host_port('rabbitmq-1')}//"

    # -- lab 08 on Kafka ------------------------------------------------------------------------
    def kafka_bootstrap(self) -> str:
        if not self._containers("kafka"):
            raise RuntimeUnavailable("no Kafka broker in this stack — lab08.use_kafka(stack) starts one")
        return f"127.0.0.1:{self._host_port('kafka-1')}"

    def reconnect_event_log(self) -> None:
        """Recreate the relay and the projector so they take the event log the stack has now (the
        topic while a broker runs: SHOP_KAFKA_BOOTSTRAP in shop.env); a container keeps the
        environment it was created with, so a restart would not do."""
        members = [m for service in ("relay", "projector") for m in self.members(service)]
        if not members:
            return
        compose = self._compose()   # shop.env rewritten first
        for member in members:
            self._before_start(member)
        compose.run("up", "-d", "--no-deps", "--force-recreate",
                    *sorted({self._service(m) for m in members}), timeout=180)
        for member in members:
            self._after_start(member)

    def members(self, service: str) -> list[str]:
        return [m for c in self._containers(service) if (m := self._member_name(c))]

    def scale(self, service: str, replicas: int) -> None:
        if service == "postgres":
            raise ScalelabError("postgres is not scaled with scale(): it has one primary")
        if replicas < 0:
            raise ScalelabError(f"replicas must be >= 0, got {replicas}")
        current = self._containers(service)
        if replicas > 0:
            self._ensure_service(self._compose(), service, max(replicas, 1))
        # Scaling in: take members out of rotation first (nginx reload), then stop them gracefully.
        removed = current[replicas:]
        if removed:
            self._members_changed(service, without={self._member_name(c) for c in removed})
            for container in removed:
                container.stop(timeout=15)
                container.remove(v=True)

    def _members_changed(self, service: str, restarted: str | None = None, without: set | None = None) -> None:
        compose_prometheus.members_changed(self, service, without or set())   # its scrape targets
        if service not in UPSTREAM or not self.members("nginx"):
            return
        for member in self.members("nginx"):
            if self._container(member).status != "running":
                continue
            if restarted:
                self._back_in_rotation(member, restarted)
            else:
                self._reload_nginx(member, strict=True, without=without)

    def reload(self, service: str) -> None:
        """nginx: re-render the upstream from the workspace and reload (SIGHUP) without dropping
        connections; other services: restart their members one by one."""
        for member in self.members(service):
            if service == "nginx":
                self._reload_nginx(member, strict=True)
            else:
                self.restart(member)

    def kill(self, member: str, signal: str = "KILL") -> None:
        if signal not in SIGNALS:
            raise ScalelabError(f"unknown signal {signal!r}: use one of {', '.join(SIGNALS)}")
        container = self._container(member)
        if signal == "STOP":          # freeze every process of the container (docker pause)
            container.pause()
        elif signal == "CONT":
            if self._fresh(container).status == "paused":
                container.unpause()
        elif container.status in ("running", "paused"):
            self._remember_addresses()
            if container.status == "paused":
                container.unpause()
            container.kill(signal=f"SIG{signal}")
            self._wait_exit(container)   # it stays down until start()

    @staticmethod
    def _wait_exit(container, timeout: float = 15.0) -> None:
        """Wait for the container to exit; SIGKILL it when it outlives ``timeout`` (as local does)."""
        import requests
        try:
            container.wait(timeout=timeout)
        except requests.exceptions.RequestException:
            container.kill(signal="SIGKILL")
            container.wait(timeout=30)

    def start(self, member: str) -> None:
        container = self._container(member)
        if container.status == "paused":
            container.unpause()
        if self._fresh(container).status != "running":
            self._before_start(member)
            container.start()
        self._after_start(member)

    def restart(self, member: str) -> None:
        """Graceful stop (the image's STOPSIGNAL, then SIGKILL after the grace period), then start."""
        container = self._container(member)
        self._remember_addresses()
        if container.status == "paused":
            container.unpause()
        container.stop(timeout=15)
        self._before_start(member)
        container.start()
        self._after_start(member)

    def _before_start(self, member: str) -> None:
        """A worker, relay or projector is ready when its announcement appears: clear the last
        incarnation's first (compose_queue). Redis reads broker.yaml's append-only settings when
        it starts: render them first."""
        if self._service(member) in compose_queue.SERVICES:
            compose_queue.forget(self, member)
        if self._service(member) == "redis":
            compose_env.valkey_conf(self.home, plan_for(self.lab) if self.lab else None, self.workspace)

    def _after_start(self, member: str) -> None:
        self._wait_ready(member)
        self._remember_addresses()
        service = self._service(member)
        if service == "nginx":
            self._reload_nginx(member, strict=False)
        else:
            self._members_changed(service, restarted=member)

    def route(self, shares: dict[str, int] | None) -> None:
        common_nginx.route(self, shares)

    def logs(self, member: str, tail: int = 40) -> str:
        text = self._container(member).logs(stdout=True, stderr=True, tail=tail)
        return text.decode(errors="replace").rstrip("\n")

    def status(self) -> pd.DataFrame:
        rows = []
        for container in self._containers():
            if not (member := self._member_name(container)):
                continue
            state = container.attrs["State"]
            running = container.status in ("running", "paused")
            rows.append({"member": member, "pid": state.get("Pid") or None,
                         "port": self._published_port(container, member),
                         "state": {"exited": "stopped", "created": "stopped"}.get(container.status, container.status),
                         "log": f"docker logs {container.name}",
                         # when the running container started: a pid alone names no incarnation
                         "started": pd.Timestamp(state["StartedAt"]) if running else None})
        return pd.DataFrame(rows, columns=["member", "pid", "port", "state", "log", "started"])

    # -- lab 06: CPU readings and the model autoscaler (scalelab/autoscaler.py) ---------------
    def cpu_seconds(self, member: str) -> float:
        """CPU time (seconds) the member's container has used: the engine's stats API
        (cpu_stats.cpu_usage.total_usage, nanoseconds, from the container's cgroup)."""
        container = self._container(member)
        try:
            stats = container.stats(stream=False, one_shot=True)
        except TypeError:     # a docker SDK without one_shot: the same numbers, after a 1 s sample
            stats = container.stats(stream=False)
        usage = (stats.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage")
        if not usage:
            raise ScalelabError(f"{member} reports no CPU usage: is it running? (stack.status())")
        return usage / 1e9

    def autoscaler(self, spec, desired_replicas):
        """No Kubernetes here: the driver's model of the HPA controller scales the containers."""
        from scalelab.autoscaler import ModelAutoscaler
        return ModelAutoscaler(self, spec, desired_replicas)

    # -- readiness --------------------------------------------------------------------------
    @staticmethod
    def _fresh(container):
        container.reload()
        return container

    def _wait_ready(self, member: str, timeout: float = READY_TIMEOUT) -> None:
        probe = {"postgres": self._postgres_ready, "standby": lambda m: compose_standby.ready(self, m),
                 "prometheus": lambda m: compose_prometheus.ready(self, m),
                 "users": self._users_ready, "redis": self._redis_ready, "rabbitmq": self._rabbitmq_ready,
                 "nginx": self._nginx_ready, "orders": self._users_ready, "express": self._users_ready,
                 "green": self._users_ready, "kafka": self._kafka_ready,
                 **dict.fromkeys(compose_queue.SERVICES, self._queue_ready)}[self._service(member)]
        def answers() -> bool:
            container = self._container(member)
            if container.status in ("exited", "dead"):
                raise ServiceFailed(f"{member} exited before it was ready; its log ends with:\n{self.logs(member, 20)}")
            try:
                return bool(container.status == "running" and probe(member))
            except Exception:   # a probe of a server still starting: any failure means "not yet"
                return False
        wait_until(answers, timeout, interval=0.05, max_interval=0.25, error=ServiceFailed,   # polling the probe
                   on_timeout=lambda _: f"{member} not ready after {timeout:.0f}s; its log ends with:\n"
                                        f"{self.logs(member, 20)}")

    def _postgres_ready(self, member: str) -> bool:
        import asyncpg

        async def probe():
            conn = await asyncpg.connect(self.database_url("app"), timeout=3)
            await conn.close()
        aio.run(probe())
        return True

    def _users_ready(self, member: str) -> bool:
        return httpx.get(f"{self.member_url(member)}/ready", timeout=2).status_code == 200

    def _queue_ready(self, member: str) -> bool:
        return compose_queue.ready(self, member, self._container(member))

    def _redis_ready(self, member: str) -> bool:
        import redis
        client = redis.Redis.from_url(self.redis_url(), socket_timeout=1, socket_connect_timeout=1)
        try:
            return client.ping() is True
        finally:
            client.close()

    def _kafka_ready(self, member: str) -> bool:
        return kafka_broker.ready(self._host_port(member), timeout=1)

    def _rabbitmq_ready(self, member: str) -> bool:
        return local_rabbitmq.login(self.rabbitmq_url())

    def _nginx_ready(self, member: str) -> bool:
        answer = httpx.get(f"{self.member_url(member)}/nginx/health", timeout=2)
        return answer.status_code == 200 and answer.json().get("generation") == compose_nginx.generation(self)

    # -- nginx ------------------------------------------------------------------------------
    def _reload_nginx(self, member: str, strict: bool, without: set | None = None) -> None:
        container = self._container(member)
        if container.status != "running":
            raise ServiceFailed(f"{member} is not running: start it with stack.start({member!r})")
        compose_nginx.write_config(self, container, strict=strict, exclude=frozenset(without or ()))
        old_workers = _nginx_workers(container)
        container.kill(signal="SIGHUP")        # nginx re-reads its configuration, gracefully
        self._wait_ready(member, timeout=15)
        # The master lets old workers accept for a moment after the new ones start: the reload
        # is complete when they have finished their requests and exited (bounded), as on local.
        wait_until(lambda: not old_workers & _nginx_workers(container), 10, interval=0.05)

    def _back_in_rotation(self, nginx: str, member: str, timeout: float = 15.0) -> None:
        """After a replica restarted and is ready: announce it to nginx (a reload with the current
        addresses — a container may come back with a new one — whose new workers start with no
        failure history for it), then wait until nginx sends it requests again, before a rolling
        restart moves on to the next replica (bounded). While it was down, nginx's own failover
        (proxy_next_upstream, max_fails) kept the clients served, as on local."""
        self._reload_nginx(nginx, strict=False)
        if not compose_nginx.configured(self) or not carries_traffic(self, self._service(member)):
            return
        wait_until_routed(self.member_url(nginx), member, timeout)


def _nginx_workers(container) -> set[str]:
    """PIDs of the nginx worker processes in ``container`` (``docker top``)."""
    top = container.top()
    pid, cmd = top["Titles"].index("PID"), top["Titles"].index("CMD")
    return {row[pid] for row in top["Processes"] if "worker process" in row[cmd]}
