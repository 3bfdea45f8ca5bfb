"""A real Postgres cluster for the local runtime: initdb once, then start/stop.

As root (CI here), Postgres refuses to run: the data directory then lives in a
temp directory owned by ``nobody`` and the server runs as ``nobody`` (setpriv).
"""

import hashlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg

from scalelab import aio, binaries
from scalelab.errors import RuntimeUnavailable, ServiceFailed
from scalelab.paths import IS_ROOT, nobody_scratch
from scalelab.process import ProcessRecord

APP_DB = "shop"
APP_ROLE = "shop"


def _nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path) -> None:
    uid, gid = _nobody()
    for root, _dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in files:
            os.chown(os.path.join(root, name), uid, gid)


def _nobody_can_run(executable: Path) -> bool:
    probe = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(executable), "--version"],
        capture_output=True,
    )
    return probe.returncode == 0


class LocalPostgres:
    """Owns one cluster directory; ``secrets.json`` in ``home`` holds its passwords."""

    def __init__(self, home: Path):
        self.home = home
        self.binary = binaries.postgres()
        self.bin_dir = self._runnable_bin_dir()
        base = nobody_scratch(home.parent, "postgres") if IS_ROOT else home
        self.data_dir = base / "data"
        self._secrets_file = home / "secrets.json"

    # -- binaries ----------------------------------------------------------
    def _runnable_bin_dir(self) -> Path:
        if not IS_ROOT or _nobody_can_run(self.binary.path):
            return self.binary.bin_dir
        # `nobody` cannot reach the venv (e.g. under a mode-700 home): use a copy it can.
        install = self.binary.bin_dir.parent
        copy = Path(tempfile.gettempdir()) / f"scalelab-pgbin-{hashlib.sha1(str(install).encode()).hexdigest()[:10]}"
        if not (copy / "bin/postgres").exists():
            shutil.copytree(install, copy, symlinks=True, dirs_exist_ok=True)
            os.chmod(copy, 0o755)
        if not _nobody_can_run(copy / "bin/postgres"):
            raise RuntimeUnavailable(f"user nobody cannot run {copy}/bin/postgres — run the lab as a non-root user")
        return copy / "bin"

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    # -- secrets -------------------------------------------------------------
    def passwords(self) -> dict[str, str]:
        import json
        if self._secrets_file.exists():
            return json.loads(self._secrets_file.read_text())
        self.home.mkdir(parents=True, exist_ok=True)
        created = {"postgres": secrets.token_urlsafe(18), APP_ROLE: secrets.token_urlsafe(18)}
        fd = os.open(self._secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(created, f)
        return created

    def dsn(self, port: int, role: str = "app") -> str:
        user = APP_ROLE if role == "app" else "postgres"
        database = APP_DB if role == "app" else "postgres"
        return f"postgresql://{user}:{self.passwords()[user]}@127.0.0.1:{port}/{database}"

    # -- lifecycle -------------------------------------------------------------
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def initdb(self) -> None:
        if self.initialised() and not self._secrets_file.exists():
            # A cluster whose passwords are gone (its state dir was deleted): unusable, start over.
            self.remove_data()
        if self.initialised():
            return
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir.parent / "pwfile"
        pwfile.write_text(self.passwords()["postgres"] + "\n")
        argv = [self.tool("initdb"), "-D", str(self.data_dir), "-U", "postgres", "--pwfile", str(pwfile),
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"]
        if IS_ROOT:
            os.chmod(self.data_dir.parent, 0o700)
            _chown_tree(self.data_dir.parent)
            argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
        out = subprocess.run(argv, capture_output=True, text=True)
        pwfile.unlink(missing_ok=True)
        if out.returncode != 0:
            raise ServiceFailed(f"initdb failed: {(out.stderr or out.stdout).strip()[-800:]}")

    def process(self, name: str, port: int, log: str, data_dir: Path | None = None) -> ProcessRecord:
        """The server on ``data_dir`` (default: the primary's; lab 04's standbys pass theirs)."""
        argv = [
            self.tool("postgres"), "-D", str(data_dir or self.data_dir), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "max_connections=100", "-c", "shared_buffers=64MB",
            "-c", "shared_preload_libraries=pg_stat_statements",
        ]
        # SIGINT is Postgres' "fast shutdown": roll back open transactions, exit cleanly.
        return ProcessRecord(name=name, argv=argv, log=log, port=port,
                             stop_signal=signal.SIGINT, run_as_nobody=IS_ROOT)

    def accepts_connections(self, port: int) -> bool:
        async def probe():
            conn = await asyncpg.connect(self.dsn(port, "admin"), timeout=2)
            await conn.close()
        try:
            aio.run(probe())
            return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False

    def create_app_database(self, port: int) -> None:
        """The app role (not a superuser) owning the ``shop`` database; idempotent."""
        app_password = self.passwords()[APP_ROLE]

        async def create():
            conn = await asyncpg.connect(self.dsn(port, "admin"), timeout=5)
            try:
                if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE):
                    # CREATE ROLE takes no bind parameters: quote the literal with Postgres' own function.
                    literal = await conn.fetchval("SELECT quote_literal($1)", app_password)
                    await conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD {literal}")
                if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", APP_DB):
                    await conn.execute(f"CREATE DATABASE {APP_DB} OWNER {APP_ROLE}")
                # The app role may read pg_stat_activity / pg_stat_statements of all sessions.
                await conn.execute(f"GRANT pg_read_all_stats TO {APP_ROLE}")
            finally:
                await conn.close()
            conn = await asyncpg.connect(self.dsn(port, "admin").rsplit("/", 1)[0] + f"/{APP_DB}", timeout=5)
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            finally:
                await conn.close()

        aio.run(create())

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir.parent if IS_ROOT else self.data_dir, ignore_errors=True)


def migrate(dsn: str) -> None:
    """Apply the shop's migrations (``python -m shop.migrate``) against ``dsn``."""
    out = subprocess.run([sys.executable, "-m", "shop.migrate"], capture_output=True, text=True,
                         env={**os.environ, "SHOP_DATABASE_URL": dsn}, timeout=120)
    if out.returncode != 0:
        raise ServiceFailed(f"migrations failed: {(out.stderr or out.stdout).strip()[-800:]}")
