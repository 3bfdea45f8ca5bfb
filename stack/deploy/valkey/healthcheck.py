"""Docker HEALTHCHECK: Valkey answers PING (after AUTH) on its port. Exit 0 = healthy."""

import os
import socket
import sys


def command(*parts: str) -> bytes:
    return f"*{len(parts)}\r\n".encode() + b"".join(f"${len(p.encode())}\r\n{p}\r\n".encode() for p in parts)


with socket.create_connection(("127.0.0.1", 6379), timeout=2) as conn:
    conn.sendall(command("AUTH", os.environ["REDIS_PASSWORD"]) + command("PING"))
    answer = b""
    while answer.count(b"\r\n") < 2:
        chunk = conn.recv(256)
        if not chunk:
            break
        answer += chunk
sys.exit(0 if answer.endswith(b"+PONG\r\n") else 1)
