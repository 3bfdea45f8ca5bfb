#!/bin/sh
# The password reaches RabbitMQ through a 0600 file, never its command line (`ps` shows that).
# default_user/default_pass are applied when the node creates its database (an empty volume).
set -eu
: "${RABBITMQ_PASSWORD:?set RABBITMQ_PASSWORD (the broker's password), e.g. in the compose env file}"
umask 077
cat > "$RABBITMQ_CONFIG_FILE" <<CONF
listeners.tcp.default = 5672
default_user = shop
default_pass = $RABBITMQ_PASSWORD
log.console = true
log.console.level = info
log.file = false
log.connection.level = warning
CONF
exec "$@"
