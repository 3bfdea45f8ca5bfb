"""Run a command from a notebook cell and fail loudly (a failing ``!cmd`` does not)."""

import shlex
import subprocess


class CommandFailed(RuntimeError):
    pass


def sh(command: str | list[str], *, timeout: float = 120, check: bool = True, quiet: bool = False) -> str:
    """Run ``command``, return its stdout; raise ``CommandFailed`` on a non-zero exit."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-10:]
        raise CommandFailed(f"`{shlex.join(argv)}` exited {proc.returncode}:\n" + "\n".join(tail))
    if not quiet and proc.stdout:
        print(proc.stdout.rstrip())
    return proc.stdout
