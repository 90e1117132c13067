"""Echo server on radical_orbit.websocket, for the tests and for Autobahn|Testsuite.

    python test/ws_echo_server.py --port 0 [--max-size N] [--cert C --key K]

Echoes every text and binary message.  Once listening it prints one line
``READY <port>`` on stdout, so a parent process started with ``--port 0``
learns the port without racing for a free one.
"""

import argparse
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from radical_orbit import websocket as ws  # noqa: E402
from radical_orbit.tlssocket import TLSSocket  # noqa: E402

DEFAULT_MAX_SIZE = 64 * 2 ** 20
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0


class EchoHandler(BaseHTTPRequestHandler):
    """Upgrades GET requests and echoes messages until the connection ends."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:
        if not ws.is_upgrade_request(self):
            body = b"WebSocket echo server\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        conn = ws.accept(self, max_message_size=self.server.max_size,
                         idle_timeout=self.server.idle_timeout)
        if conn is None:
            return
        while True:
            message = conn.recv()
            if message is None:
                return
            try:
                if message.opcode == ws.OPCODE_TEXT:
                    conn.send_text(message.data)
                else:
                    conn.send_binary(message.data)
            except ws.ConnectionClosed:
                return

    def log_message(self, format, *args) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class EchoServer(ThreadingHTTPServer):
    """Thread per connection; with an SSL context, the connection is wrapped in a
    TLSSocket and its handshake runs in that thread too (as the bridge's server does)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, max_size=DEFAULT_MAX_SIZE, idle_timeout=None,
                 ssl_context=None, verbose=False):
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.ssl_context = ssl_context
        self.verbose = verbose
        super().__init__(address, EchoHandler)

    def finish_request(self, request, client_address):
        if self.ssl_context is not None:
            request = TLSSocket(request, self.ssl_context, server_side=True)
            try:
                request.do_handshake(HANDSHAKE_TIMEOUT)
            except (OSError, ssl.SSLError):
                request.close()
                return
        super().finish_request(request, client_address)

    def shutdown_request(self, request):
        """The plain socket underneath a TLSSocket is what gets shut down and closed."""
        super().shutdown_request(getattr(request, "_sock", request))


def serve(port: int = 0, host: str = "127.0.0.1", max_size: int = DEFAULT_MAX_SIZE,
          idle_timeout: "float | None" = None, certfile: "str | None" = None,
          keyfile: "str | None" = None, verbose: bool = False) -> EchoServer:
    """Start the echo server in a daemon thread and return it (call .shutdown() to stop)."""
    context = None
    if certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        # No TLS 1.3 session tickets: clients such as the websockets sync client
        # read and write one TLS session from two threads, and tickets arriving
        # right after the handshake make that (OpenSSL-forbidden) race bite.
        if hasattr(context, "num_tickets"):
            context.num_tickets = 0
    server = EchoServer((host, port), max_size=max_size, idle_timeout=idle_timeout,
                        ssl_context=context, verbose=verbose)
    threading.Thread(target=server.serve_forever, name="ws-echo-server", daemon=True).start()
    return server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001, help="0 picks a free port")
    parser.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE)
    parser.add_argument("--idle-timeout", type=float, default=None)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    server = serve(args.port, args.host, args.max_size, args.idle_timeout,
                   args.cert, args.key, args.verbose)
    print("READY %d" % server.server_address[1], flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
