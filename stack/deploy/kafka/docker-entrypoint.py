"""Entrypoint of the kafka image: write server.properties, format the storage once, exec the broker.

The data (partitions, the metadata log, meta.properties, the cluster id) live in /var/lib/kafka,
a volume: a restarted container is the same one-node cluster. Settings come from the environment:
KAFKA_EXTERNAL_PORT (the host port Docker publishes 9094 on; required) and KAFKA_ADVERTISED_HOST
(the name the stack's containers reach it by; default kafka).
"""

import os
import sys
from pathlib import Path

import kafka_broker

DATA = Path("/var/lib/kafka")
LIBS = Path("/opt/kafka/libs")
INTERNAL, CONTROLLER, EXTERNAL = 9092, 9093, 9094


def main() -> int:
    external = os.environ.get("KAFKA_EXTERNAL_PORT", "")
    if not external.isdigit():
        print("kafka: set KAFKA_EXTERNAL_PORT to the host port 9094 is published on "
              "(the address the driver is told to use)", file=sys.stderr)
        return 2
    host = os.environ.get("KAFKA_ADVERTISED_HOST", "kafka")
    kafka_broker.write_config(DATA, INTERNAL, CONTROLLER, bind="0.0.0.0", advertised=f"{host}:{INTERNAL}",
                              external=(EXTERNAL, f"127.0.0.1:{external}"), console=True)
    if kafka_broker.format_storage(LIBS, DATA):
        print(f"kafka: storage formatted in {DATA} (cluster {kafka_broker.cluster_id(DATA)})", flush=True)
    argv = kafka_broker.argv(LIBS, DATA)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main())
