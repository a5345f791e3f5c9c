"""Our `mcp_client` example against MUSCLE3's own TcpTransportServer.

Usage: python our_client_vs_muscle3_server.py PATH/TO/mcp_client [CALLS] [FAULT_RATE]

The MUSCLE3 server's handler answers with its execution count (8 bytes LE); our client
breaks its own connection at random and checks that call i is answered with i. Exits
non-zero on any failure.
"""

import subprocess
import sys
import threading

import logging

from libmuscle.mcp.tcp_transport_server import TcpTransportServer
from libmuscle.mcp.transport_server import RequestHandler

client_bin = sys.argv[1]
calls = int(sys.argv[2]) if len(sys.argv) > 2 else 300
rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05


class CountingHandler(RequestHandler):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executions = 0

    def handle_request(self, request):  # type: ignore[no-untyped-def]
        with self.lock:
            self.executions += 1
            return self.executions.to_bytes(8, "little")


logging.getLogger("libmuscle").setLevel(logging.ERROR)
handler = CountingHandler()
server = TcpTransportServer(handler)
port = server._server.server_address[1]
# get_location() lists only non-loopback interfaces; the tests stay on 127.0.0.1.
location = f"tcp:127.0.0.1:{port}"
try:
    result = subprocess.run(
        [client_bin, "--connect", location, "--calls", str(calls),
         "--fault-rate", str(rate), "--expect", "counter"],
        capture_output=True, text=True, timeout=90,
    )
finally:
    server.close(graceful=False)

print(result.stdout.strip())
if result.returncode != 0:
    print(f"FAIL: mcp_client exited {result.returncode}\n{result.stderr}")
    sys.exit(1)
if handler.executions != calls:
    print(f"FAIL: MUSCLE3 server executed {handler.executions} requests, not {calls}")
    sys.exit(1)
print(f"ok: our client -> MUSCLE3 server: {calls} calls, each executed once")
