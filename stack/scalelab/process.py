"""One supervised server process: started in its own session, logged to a file,
stopped by signal with a deadline, and recognisable again from another Python
process (pid + start time, so a recycled pid is never mistaken for ours)."""

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from scalelab.errors import ServiceFailed
from scalelab.ports import port_busy
from scalelab.waiting import wait_until


@dataclass
class ProcessRecord:
    name: str
    argv: list[str]
    log: str
    port: int | None = None
    pid: int | None = None
    started_at: float | None = None   # psutil create_time of pid
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    run_as_nobody: bool = False
    meta: dict = field(default_factory=dict)
    cwd: str | None = None            # where it runs (and writes crash dumps); None: the caller's

    def to_json(self) -> dict:
        return asdict(self)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        Path(self.log).parent.mkdir(parents=True, exist_ok=True)
        argv = self.argv
        if self.run_as_nobody:
            # Postgres refuses to run as root: drop privileges for this child only.
            argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
        with open(self.log, "ab") as log:
            log.write(f"\n--- scalelab: starting {self.name} at {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, start_new_session=True, cwd=self.cwd,
            )
        self.pid = proc.pid
        self.started_at = psutil.Process(proc.pid).create_time()
        self._popen = proc  # keep the handle so the child is reaped, not left a zombie

    def process(self) -> psutil.Process | None:
        if self.pid is None:
            return None
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - (self.started_at or 0)) > 0.5 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None

    def signal(self, sig: int) -> None:
        if (proc := self.process()) is not None:
            proc.send_signal(sig)

    def stop(self, sig: int | None = None, timeout: float = 15.0) -> None:
        """Signal the process (its own stop signal by default), wait, then SIGKILL its group."""
        proc = self.process()
        if proc is not None:
            try:
                proc.send_signal(sig or self.stop_signal)
            except psutil.Error:
                pass
            # Exited means gone or a zombie: from another process (the CLI's `down`) our member is
            # no child, its zombie waits for init to reap it, and psutil's wait() would poll on.
            wait_until(lambda: self.process() is None, timeout, interval=0.01)
        self._kill_group()
        self._reap()
        self._wait_port_released()
        self.pid = None
        self.started_at = None

    def _kill_group(self) -> None:
        # The process led its own session: whatever is left in it (e.g. Postgres
        # backends after a SIGKILLed postmaster, the Erlang VM under RabbitMQ's start
        # script) goes too, so nothing is orphaned — and only once all of it has exited
        # does stop() return: a restart finds the member's port free again.
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        pgid = self.pid
        wait_until(lambda: not _group_alive(pgid), 5, interval=0.01)

    def _wait_port_released(self, timeout: float = 5.0) -> None:
        # A multi-threaded server (the Erlang VM) shows its leader as a zombie while
        # its other threads still tear down and hold the listening socket: only when
        # the port can be bound again has the member really let go of it.
        if self.port is None:
            return
        port = self.port
        wait_until(lambda: not port_busy(port), timeout, interval=0.02)

    def _reap(self) -> None:
        popen = getattr(self, "_popen", None)
        if popen is not None:
            try:
                popen.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30.0, what: str = "ready") -> None:
        """Poll ``probe`` until it is true; fail at once (with the log) if the process dies."""
        def answers() -> bool:
            if not self.alive():
                raise ServiceFailed(f"{self.name} exited before it was {what}; its log ends with:\n{self.log_tail()}")
            try:
                return bool(probe())
            except Exception:   # a probe of a server still starting: any failure means "not yet"
                return False
        wait_until(answers, timeout, interval=0.02, max_interval=0.25, error=ServiceFailed,
                   on_timeout=lambda _: f"{self.name} not {what} after {timeout:.0f}s; its log ends with:\n"
                                        f"{self.log_tail()}")

    @classmethod
    def from_json(cls, data: dict) -> "ProcessRecord":
        return cls(**data)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies waiting to be reaped do not)."""
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False
