"""stack.tool: the real clients (psql, nginx -T, celery, promtool, kubectl) against the live stack."""

from types import SimpleNamespace

import pytest

from conftest import solved_stack
from scalelab import tools
from scalelab.tools import ToolRun, ToolUnavailable

lab2 = solved_stack(2)


def test_psql_runs_against_the_live_database_and_its_password_is_not_shown(lab2):
    email = "tool-test@example.com"
    lab2.tool("psql", "-c", f"insert into users (email, name) values ('{email}', 'Tool') on conflict do nothing")
    run = lab2.tool("psql", "-A", "-t", "-c", f"select name from users where email = '{email}'")
    assert run.returncode == 0 and run.output.strip() == "Tool", repr(run)
    shown = repr(run)
    assert shown.startswith("$ psql -X postgresql://") and ":***@" in shown
    password = lab2.database_url().split(":")[2].split("@")[0]
    assert password not in shown


def test_a_failing_tool_answers_its_own_complaint_and_exit_status(lab2):
    run = lab2.tool("psql", "-c", "select * from no_such_table")
    assert run.returncode != 0 and 'relation "no_such_table" does not exist' in run.output
    assert f"(exit status {run.returncode})" in repr(run)


def test_nginx_dash_T_shows_the_upstream_the_learner_wrote(lab2):
    run = lab2.tool("nginx", "-T")
    assert run.returncode == 0, repr(run)
    assert "configuration file" in run.output and "test is successful" in run.output
    assert "upstream" in run.output and all(lab2.member_url(m).rsplit(":", 1)[1] in run.output
                                            for m in lab2.members("users"))


def test_a_tool_for_a_member_this_lab_does_not_run_is_refused_in_one_line(lab2):
    with pytest.raises(ToolUnavailable) as refused:
        lab2.tool("celery", "inspect", "ping")
    assert "worker-1, which this stack does not run" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ToolUnavailable, match="kubectl talks to a Kubernetes cluster: this stack runs on 'local'"):
        lab2.tool("kubectl", "get", "pods")
    with pytest.raises(ToolUnavailable, match="no tool 'mysql'"):
        lab2.tool("mysql")


class FakeStack:
    """A stack on a container or pod runtime, seen only through the seams tools.run uses."""

    def __init__(self, runtime):
        self.runtime, self.lab = runtime, 5

    def database_url(self, role="app", member=None):
        return "postgresql://app:s3cret@127.0.0.1:15432/shop"


def test_on_compose_the_tool_runs_inside_the_members_container():
    calls = []

    class Container:
        def exec_run(self, argv, user=""):
            calls.append((argv, user))
            return 0, b" ?column? \n----------\n        1\n"

    runtime = SimpleNamespace(name="compose", members=lambda service: [f"{service}-1"] if service != "postgres"
                              else ["postgres"], _container=lambda member: Container())
    run = tools.run(FakeStack(runtime), "psql", "-c", "select 1")
    assert calls == [(["psql", "-X", "postgresql://app:s3cret@127.0.0.1:5432/shop", "-c", "select 1"], "postgres")]
    assert run.where == "container of postgres" and "s3cret" not in repr(run) and run.output.endswith("1\n")
    tools.run(FakeStack(runtime), "promtool", "query", "instant", "{url}", "up")
    assert calls[-1][0] == ["promtool", "query", "instant", "http://127.0.0.1:9090", "up"]


def test_on_kubernetes_the_tool_runs_through_the_runtimes_exec_seam_in_the_pod():
    calls = []
    runtime = SimpleNamespace(name="kind", namespace="scalelab-x", members=lambda service: [f"{service}-1"],
                              exec=lambda member, argv, timeout: calls.append((member, argv)) or (0, "pong\n"))
    run = tools.run(FakeStack(runtime), "celery", "inspect", "ping")
    assert calls == [("worker-1", ["celery", "-A", "shop.tasks", "inspect", "ping"])]
    assert isinstance(run, ToolRun) and run.where == "pod of worker-1" and run.output == "pong\n"


def test_a_tool_missing_from_the_members_image_is_said_in_one_line_not_a_failed_run():
    missing = ('Internal error occurred: error executing command in container: failed to exec in container: '
               'exec: "valkey-cli": executable file not found in $PATH')
    runtime = SimpleNamespace(name="kind", namespace="scalelab-x", members=lambda service: [f"{service}-1"],
                              exec=lambda member, argv, timeout: (126, missing))
    with pytest.raises(ToolUnavailable) as failed:
        tools.run(FakeStack(runtime), "valkey-cli", "ping")
    assert "valkey-cli is not in redis-1's image" in str(failed.value) and "\n" not in str(failed.value)
    failing = SimpleNamespace(name="kind", namespace="scalelab-x", members=lambda service: [f"{service}-1"],
                              exec=lambda member, argv, timeout: (1, "Error: No such command 'inspekt'.\n"))
    assert tools.run(FakeStack(failing), "celery", "inspekt").returncode == 1, "a command that ran keeps its status"


def test_in_a_container_nginx_dash_T_reads_the_masters_own_arguments_from_its_process_title(lab2):
    """Compose and kind run nginx with their own -p/-c: the command inside the container takes
    them from the master's title (found among the processes it sees). Here the same command runs
    against nginx-1's pid."""
    import subprocess
    argv = tools._inside(FakeStack(None), "nginx", "nginx-1", ["-T"])
    assert argv[:2] == ["sh", "-c"] and "/proc/[0-9]*/cmdline" in argv[2]
    pid = int(lab2.status().set_index("member").loc["nginx-1", "pid"])
    nginx_dir = str(tools.binaries.nginx().bin_dir)
    done = subprocess.run([argv[0], argv[1], argv[2].replace("/proc/[0-9]*/", f"/proc/{pid}/"), *argv[3:]],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{nginx_dir}:/usr/bin:/bin"})
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr[-500:]
    assert "upstream" in done.stdout


lab3 = solved_stack(3)


def test_valkey_cli_signs_in_with_the_password_kept_off_its_command_line(lab3):
    try:
        pong = lab3.tool("valkey-cli", "ping")
    except ToolUnavailable as exc:      # make test installs redis-tools first (make tools-lab3)
        pytest.skip(str(exc))
    password = lab3.redis_url().split(":")[2].split("@")[0]
    assert pong.returncode == 0 and pong.output.strip() == "PONG", pong
    assert password not in " ".join(pong.argv) and "WRONGPASS" not in pong.output
