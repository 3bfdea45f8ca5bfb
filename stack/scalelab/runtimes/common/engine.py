"""The Docker engine and the Compose CLI the ``compose`` runtime drives.

``connect()`` returns a docker SDK client or raises ``RuntimeUnavailable`` in one line
naming the fix; ``compose_command()`` finds Compose v2 (``docker compose``) or v1
(``docker-compose``, Debian 12's package); ``Compose`` runs it for one project, bounded in time.
"""

import functools
import os
import shutil
import subprocess
from pathlib import Path

from scalelab.errors import RuntimeUnavailable, ServiceFailed

NO_ENGINE = ("docker engine not reachable — install Docker / start dockerd "
             "(stack/deploy/ensure-docker.sh does both on Debian as root), or use runtime=\"local\"")
NO_COMPOSE = ("docker compose not found — install the Compose plugin or Compose v1 "
              "(Debian: apt-get install docker-compose), or use runtime=\"local\"")


def connect():
    """A docker SDK client for the engine of this environment (DOCKER_HOST or the local socket)."""
    try:
        import docker
        import docker.errors
    except ImportError:  # pragma: no cover - the package is a project dependency
        raise RuntimeUnavailable("the docker Python package is missing — run `make setup`") from None
    if shutil.which("docker") is None and shutil.which("docker-compose") is None:
        raise RuntimeUnavailable(NO_ENGINE)
    try:
        client = docker.from_env(version="auto", timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeUnavailable(f"{NO_ENGINE} ({str(exc).splitlines()[0][:120]})") from exc
    return client


@functools.lru_cache(maxsize=1)
def compose_command() -> tuple[str, ...]:
    """``("docker", "compose")`` (v2 plugin) or ``("docker-compose",)`` (v1)."""
    for argv in (("docker", "compose"), ("docker-compose",)):
        if shutil.which(argv[0]) is None:
            continue
        probe = subprocess.run([*argv, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return argv
    raise RuntimeUnavailable(NO_COMPOSE)


class Compose:
    """``docker compose -p PROJECT -f compose.yaml -f compose.lab.yaml --env-file ENV ...``"""

    def __init__(self, project: str, files: list[Path], env_file: Path, log: Path):
        self.project, self.files, self.env_file, self.log = project, files, env_file, log

    def argv(self, *args: str) -> list[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return [*compose_command(), "-p", self.project, *files, "--env-file", str(self.env_file), *args]

    def run(self, *args: str, timeout: float = 300, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run one compose command; ``env`` overrides the env file's values for this call."""
        argv = self.argv(*args)
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                 cwd=self.files[0].parent, stdin=subprocess.DEVNULL,
                                 env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired as exc:
            raise ServiceFailed(f"`{' '.join(argv[-len(args):])}` took over {timeout:.0f}s; see {self.log}") from exc
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(argv)}\n{out.stdout}{out.stderr}(exit {out.returncode})\n")
        if check and out.returncode != 0:
            tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-12:])
            raise ServiceFailed(f"docker compose {' '.join(args)} failed (exit {out.returncode}):\n{tail}")
        return out
