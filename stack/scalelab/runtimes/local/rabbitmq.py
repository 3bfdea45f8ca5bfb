"""RabbitMQ as a local process: ``rabbitmq-1``, a node of the stack's own (labs 05, 07, 08).

The server is Debian's ``rabbitmq-server`` package (``binaries.rabbitmq()``;
``stack/deploy/ensure-rabbitmq.sh`` installs it), never the package's system service: the
driver runs a node of its own, everything under ``<state>/local/rabbitmq/<member>/``:

* its own name (``rabbitmq-1@localhost``), AMQP port (on 127.0.0.1 only), Erlang distribution
  port and port-mapper (epmd) port — free ports the driver picks, so it never meets a system
  node on 5672/25672/4369, nor another stack's;
* its own Erlang cookie (``home/.erlang.cookie``, 0400) and its own user and password
  (``rabbitmq.conf``, 0600: never on a command line);
* its data (``mnesia/``: queue definitions and persistent messages), deleted with the stack's data;
* its working directory, where a dying Erlang VM writes ``erl_crash.dump`` and Mnesia its
  ``MnesiaCore.*`` dumps: never the caller's (a notebook's cwd is ``solutions/`` or ``labs/``).

Erlang nodes register with epmd, which a node starts as a daemon that outlives it. Here the
member starts its own epmd first, in the member's process group, and the node (``-start_epmd
false``) uses it: stopping the member — or ``stack.kill("rabbitmq-1")`` — ends both. SIGTERM
is RabbitMQ's graceful stop (its start script forwards it to the Erlang VM). Ready = an AMQP
login with the stack's credentials succeeds.
"""

import amqp

from scalelab import binaries
from scalelab.ports import free_port
from scalelab.process import ProcessRecord
from scalelab.runtimes.local.redis import _private_write, secret

USER = "shop"
# Start epmd on the member's own port, wait until it answers, then become the RabbitMQ node.
START = """"$EPMD" -port "$ERL_EPMD_PORT" -address 127.0.0.1 &
i=0
until "$EPMD" -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -gt 200 ] && { echo "scalelab: epmd did not start on port $ERL_EPMD_PORT"; exit 1; }
  sleep 0.05
done
exec "$RABBITMQ_SERVER"
"""


def password(rt) -> str:
    return secret(rt.home / "rabbitmq" / "password")


def url(rt, rec: ProcessRecord) -> str:
    return f"amqp://{USER}:{password(rt)}@127.0.0.1:{rec.port}//"


def preflight(rt) -> None:
    """Raise RuntimeUnavailable (one line naming the fix) before anything of the stack starts."""
    binaries.rabbitmq()
    binaries.epmd()


def record(rt, name: str, port: int) -> ProcessRecord:
    home = rt.home / "rabbitmq" / name
    (home / "home").mkdir(parents=True, exist_ok=True)
    cookie = home / "home" / ".erlang.cookie"
    if not cookie.exists():
        _private_write(cookie, secret(home / "cookie"))
        cookie.chmod(0o400)
    _private_write(home / "rabbitmq.conf", "\n".join([
        f"listeners.tcp.1 = 127.0.0.1:{port}",
        f"default_user = {USER}",
        f"default_pass = {password(rt)}",   # applied when the node creates its database (first start)
        "log.console = true", "log.console.level = info", "log.file = false",
        "log.connection.level = warning",   # not a line per /ready probe
        "",
    ]))
    (home / "enabled_plugins").write_text("[].\n")   # no management UI: nothing listens but AMQP
    (home / "rabbitmq-env.conf").write_text("")      # not /etc/rabbitmq's
    env = {
        "HOME": str(home / "home"), "RABBITMQ_SERVER": str(binaries.rabbitmq().path), "EPMD": str(binaries.epmd()),
        "RABBITMQ_NODENAME": f"{name}@localhost", "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),   # none (not /etc/rabbitmq's)
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"), "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_PID_FILE": str(home / "pid"), "ERL_CRASH_DUMP": str(home / "erl_crash.dump"),
        "RABBITMQ_DIST_PORT": str(free_port()), "ERL_EPMD_PORT": str(free_port()), "ERL_EPMD_ADDRESS": "127.0.0.1",
        # Distribution on loopback, our epmd only, and no busy-waiting schedulers on a shared machine.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false "
                                               "+sbwt none +sbwtdcpu none +sbwtdio none",
    }
    return ProcessRecord(name=name, argv=["sh", "-c", START], log=str(rt.home / f"logs/{name}.log"), port=port,
                         env=env, cwd=str(home))   # crash dumps land here, with the node's data


def ready(rt, rec: ProcessRecord) -> bool:
    return login(url(rt, rec))


def login(amqp_url: str) -> bool:
    """An AMQP login with these credentials succeeds (the probe of both runtimes)."""
    from kombu.utils.url import parse_url
    parts = parse_url(amqp_url)
    conn = amqp.Connection(host=f"{parts['hostname']}:{parts['port']}", userid=parts["userid"],
                           password=parts["password"], connect_timeout=1)
    try:
        conn.connect()
    except BaseException:
        conn.collect()
        raise
    conn.close()
    return True
