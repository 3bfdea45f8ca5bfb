#!/bin/sh
# Make a RabbitMQ server available for the labs whose stack runs one (05, 07, 08): `make test`
# and `make lab-5` (7, 8) run this, or it says in one line how to get one.
#
#   exit 0  a RabbitMQ server is there (RABBITMQ_SERVER, or Debian's package)
#   exit 1  none, and this script cannot install one: the fix is printed
#
# As root with apt (Debian, CI here): installs Debian's `rabbitmq-server` package (3.10 on
# bookworm, with its Erlang), without its recommends, and starts no service: the lab runs its
# own node (own data dir, ports and Erlang cookie, under the state directory), never the
# package's system service.
set -u

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
say() { echo "ensure-rabbitmq: $*"; }
found() {
    if [ -n "${RABBITMQ_SERVER:-}" ]; then [ -x "$RABBITMQ_SERVER" ]; return; fi
    [ -x "$SERVER" ]
}

found && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing rabbitmq-server (apt-get) ..."
    timeout 600 apt-get update -qq >/dev/null 2>&1 || true
    # RUNLEVEL=1 and policy-rc.d's 101: the package's postinst starts no service (the lab runs its own node).
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 timeout 900 apt-get install -y -qq --no-install-recommends \
        rabbitmq-server >/dev/null 2>&1 || say "apt-get install rabbitmq-server failed"
    found && exit 0
fi
echo "rabbitmq-server not found — run \`apt-get install rabbitmq-server\` (Debian/Ubuntu, as root) or \`brew install rabbitmq\`, or set RABBITMQ_SERVER=/path/to/sbin/rabbitmq-server"
exit 1
