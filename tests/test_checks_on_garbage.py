"""No check can raise anything but CheckFailed / NotAttempted: each exercise's check of every lab
meets a stack whose every endpoint answers garbage (an HTTP 200 of plain text to any bytes: to
HTTP clients, to asyncpg, to Redis), whose workspace holds the reference solutions (so the check
gets past "not attempted"), and whose runtime does nothing. It must fail in one message, fast
enough, never with a traceback or another exception."""

import shutil
import socket
import socketserver
import threading

import pandas as pd
import pytest

from scalelab import Stack
from scalelab.exercise import CheckFailed
from scalelab.references import exercises, reference_file

LABS = range(1, 9)
BODY = b"<html>garbage</html>\x00\xff"
GARBAGE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
           % len(BODY) + BODY)


class _Garbage(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(2)
        try:
            self.request.recv(65536)
        except OSError:
            pass
        try:
            self.request.sendall(GARBAGE)
        except OSError:
            pass


@pytest.fixture(scope="module")
def garbage_port():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Garbage)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class GarbageRuntime:
    """The runtime protocol (runtimes/base.py): every address the garbage server, every action a
    no-op, no optional capability (standbys, alert rules, ...): Stack says so in one line."""
    name = "garbage"

    def __init__(self, port):
        self.port = port

    def running_lab(self):
        return None

    def url(self, service="users"):
        return f"http://127.0.0.1:{self.port}"

    member_url = url

    def members(self, service):
        return [f"{service}-1"] if service != "postgres" else ["postgres"]

    def database_url(self, role="app", member=None):
        return f"postgresql://shop:pw@127.0.0.1:{self.port}/shop"

    def redis_url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def rabbitmq_url(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def status(self):
        return pd.DataFrame(columns=["member", "state", "pid", "port", "started"])

    def logs(self, member, tail=40):
        return ""

    def cpu_seconds(self, member):
        return 0.0

    def autoscaler(self, spec, desired_replicas):
        from scalelab.autoscaler import ModelAutoscaler
        return ModelAutoscaler(self, spec, desired_replicas)

    def _nothing(self, *args, **kwargs):
        return None

    up = down = scale = kill = start = restart = reload = _nothing


def garbage_stack(lab, port, state_dir):
    """A real Stack (its methods, its plan, its workspace) over the garbage runtime."""
    stack = Stack(lab=lab, state_dir=state_dir)
    stack.runtime = GarbageRuntime(port)
    return stack


CHECKS = [pytest.param(lab, ex, id=f"lab{lab:02d}-{ex.name}") for lab in LABS for ex in exercises(lab)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("lab, exercise", CHECKS)
def test_a_check_against_a_stack_that_answers_garbage_fails_in_one_message(lab, exercise, garbage_port, tmp_path):
    stack = garbage_stack(lab, garbage_port, tmp_path)
    for ex in exercises(lab):                                 # a finished workspace: past "not attempted"
        if ex.reference:
            shutil.copy(reference_file(ex), stack.workspace / reference_file(ex).name)
    with pytest.raises(BaseException) as raised:
        exercise.check(stack)
    assert isinstance(raised.value, CheckFailed), f"{type(raised.value).__name__}: {raised.value}"
    assert "Traceback" not in str(raised.value) and str(raised.value).startswith(exercise.title)


def test_every_lab_has_exercises_to_feed_garbage_to():
    assert len(CHECKS) >= 16, [c.id for c in CHECKS]


def test_the_garbage_server_answers_garbage(garbage_port):
    with socket.create_connection(("127.0.0.1", garbage_port), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 200")
