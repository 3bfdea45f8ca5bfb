"""Docker HEALTHCHECK: RabbitMQ answers the AMQP protocol header with Connection.Start. Exit 0 = healthy."""

import socket
import sys

with socket.create_connection(("127.0.0.1", 5672), timeout=2) as conn:
    conn.sendall(b"AMQP\x00\x00\x09\x01")
    frame = conn.recv(7)
sys.exit(0 if frame[:3] == b"\x01\x00\x00" else 1)   # a method frame on channel 0: the broker is up
