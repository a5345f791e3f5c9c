"""MUSCLE3's own TcpTransportClient against our `mcp_server` example.

Usage: python muscle3_client_vs_our_server.py PATH/TO/mcp_server [CALLS] [FAULT_RATE]

MUSCLE3's fault-injection hooks (libmuscle.mark.before_tcp_send/receive) are patched
to shut the socket down at random, as MUSCLE3's own tests do. The server runs the
counter handler, so call i must be answered with i: anything else is a duplicate or a
loss. Exits non-zero on any failure.
"""

import random
import re
import signal
import socket
import subprocess
import sys

import logging

import libmuscle.mark as mark
from libmuscle.mcp.tcp_transport_client import TcpTransportClient

server_bin = sys.argv[1]
calls = int(sys.argv[2]) if len(sys.argv) > 2 else 300
rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05

logging.getLogger("libmuscle").setLevel(logging.ERROR)
rng = random.Random(42)
faults = {"on": True, "injected": 0}


def maybe_break(sock: socket.socket) -> None:
    if faults["on"] and rng.random() < rate:
        faults["injected"] += 1
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


mark.before_tcp_send = maybe_break
mark.before_tcp_receive = maybe_break

server = subprocess.Popen(
    [server_bin, "--listen", "127.0.0.1:0", "--handler", "counter", "--log", "error"],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
)
try:
    location = server.stdout.readline().strip()
    assert location.startswith("tcp:127.0.0.1:"), f"bad location line {location!r}"

    client = TcpTransportClient(location)
    for i in range(1, calls + 1):
        response, _ = client.call(f"call {i}".encode())
        count = int.from_bytes(bytes(response), "little")
        if count != i:
            print(f"FAIL: call {i} answered with execution {count}")
            sys.exit(1)
    faults["on"] = False
    client.close()
finally:
    server.send_signal(signal.SIGINT)
    _, stderr = server.communicate(timeout=30)

processed = re.search(r"requests_processed: (\d+)", stderr)
if processed is None or int(processed.group(1)) != calls:
    print(f"FAIL: server processed {processed and processed.group(1)} requests, not {calls}")
    print(stderr)
    sys.exit(1)
ended = re.search(r"sessions_ended: (\d+)", stderr)
print(
    f"ok: MUSCLE3 client -> our server: {calls} calls, each executed once, "
    f"{faults['injected']} injected faults, sessions ended: {ended and ended.group(1)}"
)
