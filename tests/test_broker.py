"""The broker settings (broker.yaml), the servers without a wheel (RabbitMQ, Prometheus) and the
local RabbitMQ node, without a whole lab's stack."""

import os
import subprocess
from pathlib import Path

import psutil
import pytest
from kombu import Connection, Exchange, Producer, Queue

from scalelab import Stack, binaries, doctor
from scalelab.errors import RuntimeUnavailable, ScalelabError
from scalelab.plans import Plan
from scalelab.ports import port_busy
from scalelab.runtimes.local import LocalRuntime
from shop.broker import STARTING, BrokerSettingsError, chosen, parse

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, named", [
    ("broker: kafka\n", "broker: 'kafka'"),
    ("appendonly: yes\n", "broker: missing"),
    ("broker: redis\nappendfsync: sometimes\n", "appendfsync: 'sometimes'"),
    ("broker: redis\nappendonly: maybe\n", "appendonly: 'maybe'"),
    ("broker: redis\nconfirm_publish: true\n", "confirm_publish is a setting of broker: rabbitmq"),
    ("broker: rabbitmq\nappendonly: yes\n", "appendonly is a setting of broker: redis"),
    ("broker: rabbitmq\nconfirm: true\n", "unknown setting 'confirm'"),
    ("- broker: rabbitmq\n", "not a list"),
    ("broker: [rabbitmq\n", "not valid YAML"),
], ids=["unknown-broker", "no-broker", "bad-fsync", "bad-bool", "redis-with-confirms", "rabbitmq-with-aof",
        "misspelt", "a-list", "bad-yaml"])
def test_a_bad_broker_setting_is_one_line_naming_it(text, named):
    with pytest.raises(BrokerSettingsError) as raised:
        parse(text)
    assert named in str(raised.value) and str(raised.value).startswith("broker.yaml") and "\n" not in str(raised.value)


def test_yaml_words_and_defaults_mean_what_redis_and_celery_mean():
    assert parse("broker: redis\nappendonly: yes\nappendfsync: no\n").appendfsync == "no"   # YAML's `no` is false
    assert parse("broker: redis\nappendonly: 'yes'\n").appendonly is True
    rabbit = parse("broker: rabbitmq\n")
    assert (rabbit.durable, rabbit.persistent, rabbit.confirm_publish) == (True, True, False)   # Celery's defaults
    assert parse("# YOUR CODE HERE\n") is None and parse("") is None


def test_lab5_starts_on_redis_in_memory_and_later_labs_on_the_reference(tmp_path):
    assert chosen(tmp_path, ["broker"]) == STARTING and STARTING.label() == "redis, appendonly no"
    (tmp_path / "broker.yaml").write_text("broker: redis\nappendonly: yes\nappendfsync: always\n")
    assert chosen(tmp_path, ["broker"]).label() == "redis, appendonly yes, appendfsync always"
    assert chosen(tmp_path, []).label() == "rabbitmq, durable true, persistent true, confirm_publish true"


def test_a_bad_broker_yaml_stops_lab5_before_anything_starts_and_doctor_names_it(tmp_path):
    stack = Stack(lab=5, state_dir=tmp_path)
    (stack.workspace / "broker.yaml").write_text("broker: redis\nappendfsync: sometimes\n")
    with pytest.raises(ScalelabError, match=r"appendfsync: 'sometimes' is not one of no, everysec, always") as raised:
        stack.up()
    assert "\n" not in str(raised.value) and stack.status().empty
    status, what, detail = doctor._broker_row(tmp_path)
    assert (status, what) == (doctor.WARN, "broker") and "appendfsync: 'sometimes'" in detail


def test_doctor_shows_rabbitmq_and_its_version():
    rows = {what: (status, detail) for status, what, detail in doctor.rows(Path("/tmp"))}
    status, detail = rows["rabbitmq"]
    assert status == doctor.OK and detail.startswith("RabbitMQ 3.") and "Erlang/OTP" in detail
    assert rows["broker"][1].endswith("labs 07, 08: rabbitmq, durable true, persistent true, confirm_publish true")


# The two servers without a wheel: Debian's packages, installed by ensure-*.sh (or one line naming the fix).
SERVERS = [("rabbitmq", "RABBITMQ_SERVER", "DEBIAN_RABBITMQ", "ensure-rabbitmq.sh",
            ("apt-get install rabbitmq-server", "brew install rabbitmq")),
           ("prometheus", "PROMETHEUS_BIN", "DEBIAN_PROMETHEUS", "ensure-prometheus.sh",
            ("apt-get install prometheus", "brew install prometheus"))]


@pytest.mark.parametrize("name, env, debian, script, installs", SERVERS, ids=[s[0] for s in SERVERS])
def test_no_server_anywhere_is_one_line_naming_apt_brew_and_the_override(monkeypatch, tmp_path, name, env, debian,
                                                                          script, installs):
    monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(binaries.shutil, "which", lambda _: None)
    monkeypatch.setattr(binaries, debian, tmp_path / name)
    with pytest.raises(RuntimeUnavailable) as raised:
        getattr(binaries, name)()
    message = str(raised.value)
    assert "\n" not in message and all(fix in message for fix in (script, *installs, env))


@pytest.mark.parametrize("name, env, debian, script, installs", SERVERS, ids=[s[0] for s in SERVERS])
def test_ensure_script_is_quick_and_quiet_when_the_server_is_there(tmp_path, name, env, debian, script, installs):
    fake = tmp_path / name
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    out = subprocess.run([str(REPO / "stack/deploy" / script)], env={env: str(fake), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr


# -- a RabbitMQ node of the stack's own -------------------------------------------------------
@pytest.fixture
def node(tmp_path):
    """The local runtime running RabbitMQ alone."""
    rt = LocalRuntime(tmp_path / "state")
    rt.up(Plan(5, "rabbitmq alone", {"rabbitmq": 1}), tmp_path / "workspace")
    yield rt
    rt.down()
    rt.wipe()


def group(rt) -> list[psutil.Process]:
    pid = rt.procs["rabbitmq-1"].pid
    return [p for p in psutil.process_iter() if _pgid(p.pid) == pid]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_the_node_listens_on_loopback_with_its_own_epmd_and_a_sigkill_takes_both(node, tmp_path):
    names = {p.name() for p in group(node)}
    assert {"beam.smp", "epmd"} <= names, names
    epmd = next(p for p in group(node) if p.name() == "epmd")
    assert "4369" not in " ".join(epmd.cmdline()), "not the system port mapper's port"
    amqp_port = node.procs["rabbitmq-1"].port
    listening = {c.laddr for p in group(node) for c in p.net_connections("tcp") if c.status == "LISTEN"}
    assert ("127.0.0.1", amqp_port) in listening and {addr[0] for addr in listening} <= {"127.0.0.1", "::1"}, listening
    assert (tmp_path / "state/local/rabbitmq/rabbitmq-1/mnesia").is_dir()
    beam = next(p for p in group(node) if p.name() == "beam.smp")
    assert Path(beam.cwd()) == tmp_path / "state/local/rabbitmq/rabbitmq-1", "crash dumps land in its state dir"
    assert beam.environ()["ERL_CRASH_DUMP"].startswith(str(tmp_path / "state"))

    url = node.rabbitmq_url()
    queue = Queue("survivor", Exchange("survivor", type="direct", durable=True), routing_key="survivor", durable=True)
    with Connection(url, transport_options={"confirm_publish": True}) as conn:
        queue(conn.default_channel).declare()
        Producer(conn.default_channel).publish({"order": 1}, exchange=queue.exchange, routing_key="survivor",
                                               delivery_mode=2)   # confirmed: on disk
    members = group(node)
    node.kill("rabbitmq-1", "KILL")
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in members), "no orphan (epmd included)"
    assert not port_busy(amqp_port)
    node.start("rabbitmq-1")
    assert node.procs["rabbitmq-1"].port == amqp_port, "back on its port"
    with Connection(url) as conn:
        assert queue(conn.default_channel).queue_declare(passive=True).message_count == 1, "the confirmed message survived"


def test_down_leaves_no_process_of_the_node_and_purge_deletes_its_data(tmp_path):
    rt = LocalRuntime(tmp_path / "state")
    rt.up(Plan(5, "rabbitmq alone", {"rabbitmq": 1}), tmp_path / "workspace")
    members = group(rt)
    rt.down()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in members)
    rt.wipe()
    assert not (tmp_path / "state/local/rabbitmq").exists()


def test_an_erlang_crash_dump_can_never_be_committed():
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "solutions/MnesiaCore.rabbitmq-1@localhost_1_2_3",
                              "labs/erl_crash.dump"], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == ["solutions/MnesiaCore.rabbitmq-1@localhost_1_2_3", "labs/erl_crash.dump"]


def test_a_servers_port_is_below_the_ephemeral_range_so_no_reconnecting_client_can_take_it():
    from scalelab import ports
    picked = {ports.free_port() for _ in range(20)}
    assert all(ports.LOWEST <= port < ports._ephemeral_start() for port in picked), picked
    assert len(picked) > 1 and not any(port_busy(port) for port in picked)
