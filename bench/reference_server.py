"""The reference: a bare stdlib ThreadingHTTPServer, run in its own process.

``GET /ping`` answers a small JSON body (about the size of the echo plugin's ping),
``POST /echo`` streams the request body back (256 KiB pieces, Content-Length known).
HTTP/1.1 keep-alive, Nagle off (``disable_nagle_algorithm``), written the plain
stdlib way: ``send_response``/``send_header``/``end_headers``, then the body.
``--lean`` writes the status line, headers and body in one hand-built send instead
(what the bridge itself does; a stricter reference, about 2x less server CPU).
``PUT /file?path=P`` writes the body to the file P (1 MiB reads, fsync at the end) and
``GET /file?path=P`` sends it back (1 MiB pieces): the direct transfer the staging
benchmark compares with.

Prints ``REFERENCE PORT <n>`` once it listens; stops on SIGTERM/SIGINT.
"""
import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

CHUNK = 256 * 1024
FILE_CHUNK = 1 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    lean = False

    def log_message(self, fmt, *args):
        pass

    def _head(self, status: int, ctype: str, length: int) -> bytes:
        """The response head: returned for the caller to send with the body (lean), or
        sent at once the stdlib way (returns b"")."""
        if self.lean:
            return ("HTTP/1.1 %d %s\r\nServer: reference\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                    % (status, self.responses[status][0], ctype, length)).encode("latin-1")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        return b""

    def _file_path(self) -> str:
        return parse_qs(self.path.partition("?")[2]).get("path", [""])[-1]

    def do_PUT(self):
        length = int(self.headers.get("Content-Length") or 0)
        left = length
        with open(self._file_path(), "wb") as f:
            while left > 0:
                piece = self.rfile.read(min(FILE_CHUNK, left))
                if not piece:
                    self.close_connection = True
                    return
                f.write(piece)
                left -= len(piece)
            f.flush()
            os.fsync(f.fileno())
        body = json.dumps({"size": length}).encode()
        self.wfile.write(self._head(200, "application/json", len(body)) + body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/file":
            with open(self._file_path(), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = self._head(200, "application/octet-stream", size)
                if head:
                    self.wfile.write(head)
                for piece in iter(lambda: f.read(FILE_CHUNK), b""):
                    self.wfile.write(piece)
        elif path.endswith("/ping"):
            body = json.dumps({"pong": True, "query": dict(p.split("=", 1) for p in query.split("&") if "=" in p)}).encode()
            self.wfile.write(self._head(200, "application/json", len(body)) + body)
        else:
            body = b'{"error": true, "status_code": 404, "detail": "not found"}'
            self.wfile.write(self._head(404, "application/json", len(body)) + body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not self.path.endswith("/echo"):
            self.rfile.read(length)
            body = b'{"error": true, "status_code": 404, "detail": "not found"}'
            self.wfile.write(self._head(404, "application/json", len(body)) + body)
            return
        ctype = self.headers.get("Content-Type") or "application/octet-stream"
        head = self._head(200, ctype, length)
        left = length
        first = self.rfile.read(min(CHUNK, left)) if left else b""
        left -= len(first)
        self.wfile.write(head + first)
        while left > 0:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                self.close_connection = True
                return
            left -= len(piece)
            self.wfile.write(piece)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--lean", action="store_true", help="head and body in one hand-built send")
    args = p.parse_args()
    Handler.lean = args.lean
    server = Server((args.host, args.port), Handler)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("REFERENCE PORT %d\n" % server.server_address[1])
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.25)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
