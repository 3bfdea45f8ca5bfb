"""The ``compose`` runtime: a member is a Docker container of ``stack/deploy/compose.yaml``.

``docker compose`` creates the project and scales services; the docker SDK handles one
container at a time (kill, pause, start, logs, ports). Ports are published on 127.0.0.1.

    runtime.py     ComposeRuntime: the protocol (up, down, members, kill/start/restart, scale, status)
    env.py         secrets and env files under ``<state_dir>/compose`` (the kubernetes runtime reuses them)
    nginx.py       nginx's configuration rendered for a container, tested in it, loaded by SIGHUP
    standby.py     lab 04's standby container, made by base backup of the primary
    queue.py       workers, relay and projector containers (labs 05, 07, 08)
    prometheus.py  Prometheus in a container, scraping the members on the Compose network (lab 07)

The Docker engine and the images it runs are shared with kind and kubernetes: ``runtimes/common``.
"""

from scalelab.runtimes.compose.runtime import ComposeRuntime

__all__ = ["ComposeRuntime"]
