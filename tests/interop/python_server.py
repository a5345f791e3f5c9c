"""MUSCLE3's own TcpTransportServer with an echo handler, for the transport benchmark.

Usage: python python_server.py

Listens on 127.0.0.1 only, on a free port, and prints its location, tcp:127.0.0.1:PORT,
as the first line on stdout. Serves until stdin closes or SIGTERM (or SIGINT) arrives,
then closes the server without waiting for sessions to end.

The server is MUSCLE3's TcpTransportServer, unchanged: the same TcpTransportServerImpl
(socketserver.ThreadingMixIn, one thread per connection, TCP_NODELAY and TCP_QUICKACK)
and TcpHandler. Only the bind address differs: MUSCLE3 binds every interface (""), and
get_location() lists the non-loopback ones; the benchmark stays on loopback.
"""

import logging
import signal
import sys
import threading

from libmuscle.mcp.tcp_transport_server import (
    TcpHandler,
    TcpTransportServer,
    TcpTransportServerImpl,
)
from libmuscle.mcp.transport_server import RequestHandler, TransportServer



class EchoHandler(RequestHandler):
    def handle_request(self, request):  # type: ignore[no-untyped-def]
        return request


class LoopbackTcpTransportServer(TcpTransportServer):
    """TcpTransportServer.__init__, bound to 127.0.0.1 rather than every interface."""

    def __init__(self, handler: RequestHandler, port: int = 0) -> None:
        TransportServer.__init__(self, handler)
        self._server = TcpTransportServerImpl(("127.0.0.1", port), TcpHandler, self)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), daemon=True
        )
        self._server_thread.start()


class Stop(Exception):
    pass


def stop(signum, frame):  # type: ignore[no-untyped-def]
    raise Stop()


logging.getLogger("libmuscle").setLevel(logging.ERROR)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
server = LoopbackTcpTransportServer(EchoHandler())
port = server._server.server_address[1]
print(f"tcp:127.0.0.1:{port}", flush=True)
try:
    # Returns at end of input; a signal interrupts the read by raising Stop.
    sys.stdin.buffer.read()
except Stop:
    pass
finally:
    server.close(graceful=False)
print("python server stopped", file=sys.stderr, flush=True)
