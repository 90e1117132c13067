"""HTTP/1.1 plumbing on top of ``http.server``: the threaded server (TLS handshake
in the connection thread), request-body readers and response writers."""
import json
import re
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..errors import BadRequest, PayloadTooLarge, envelope
from ..logs import redact
from ..tlssocket import TLSSocket

log = logging.getLogger("radical_orbit.bridge.http")

TLS_HANDSHAKE_TIMEOUT = 10.0
MAX_HEADERS = 100
MAX_HEADER_LINE = 65536
READ_CHUNK = 256 * 1024


class Server(ThreadingHTTPServer):
    """Thread per connection; a TLS handshake happens in that thread, so one slow
    client cannot stall the accept loop. At most ``max_connections`` at once: beyond,
    a new connection is closed at once (the thread budget is the bridge's memory)."""

    daemon_threads = True
    block_on_close = False   # stopping must not wait for idle keep-alive connections
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, handler, tls: Optional[ssl.SSLContext] = None,
                 max_connections: int = 10000, bind_and_activate: bool = True):
        self.tls = tls
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, handler, bind_and_activate)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            log.warning("refusing a connection from %s: %d connections open (--max-connections)",
                        client_address[0], self.max_connections)
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name="http-%s:%s" % client_address[:2], daemon=True)
        thread.start()

    def _serve_connection(self, request, client_address):
        try:
            self.process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request, client_address):
        if self.tls is not None:
            request = TLSSocket(request, self.tls, server_side=True)
            try:
                request.do_handshake(TLS_HANDSHAKE_TIMEOUT)
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                request.close()
                return
        super().finish_request(request, client_address)

    def shutdown_request(self, request):
        """The plain socket underneath a TLSSocket is what gets shut down and closed."""
        super().shutdown_request(getattr(request, "_sock", request))

    def handle_error(self, request, client_address):
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    # Session tickets arrive after the handshake, while a client may already be reading
    # and writing from two threads; clients that share one TLS object that way trip on them.
    ctx.num_tickets = 0
    return ctx


class Headers:
    """Request headers: what ``http.client.HTTPMessage`` offers the handlers, for a
    fraction of its cost. Names are case-insensitive; ``get`` returns the first value."""

    __slots__ = ("_pairs", "_first")

    def __init__(self) -> None:
        self._pairs: List[Tuple[str, str]] = []
        self._first: Dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._pairs.append((name, value))
        self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str, default: Optional[List[str]] = None) -> Optional[List[str]]:
        key = name.lower()
        values = [v for n, v in self._pairs if n.lower() == key]
        return values or default

    def __getitem__(self, name: str) -> Optional[str]:
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def items(self) -> List[Tuple[str, str]]:
        return list(self._pairs)

    def keys(self) -> List[str]:
        return [n for n, _v in self._pairs]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._pairs)

    def __str__(self) -> str:
        return "".join("%s: %s\n" % pair for pair in self._pairs)


class BodyReader:
    """The request body as a stream: Content-Length or chunked transfer encoding,
    with a size cap (413): checked against Content-Length before anything is read, and
    against the bytes read so far for a chunked body."""

    def __init__(self, rfile, headers, limit: int):
        self._rfile = rfile
        self.limit = limit
        te = (headers.get("Transfer-Encoding") or "").lower()
        self.chunked = "chunked" in te
        self.length: Optional[int] = None
        self._left = 0
        self._chunk_left = 0
        self._done = False
        self.consumed = 0
        if not self.chunked:
            raw = headers.get("Content-Length")
            try:
                self.length = int(raw) if raw is not None else 0
            except ValueError:
                raise BadRequest("invalid Content-Length %r" % raw)
            if self.length < 0:
                raise BadRequest("invalid Content-Length %r" % raw)
            self._left = self.length
            self._done = self.length == 0
            if self.length > limit:
                raise PayloadTooLarge("request body of %d bytes exceeds the limit of %d bytes"
                                      % (self.length, limit))

    @property
    def done(self) -> bool:
        return self._done

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at the end of the body (across HTTP chunks)."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_CHUNK), b""))
        pieces = []
        wanted = size
        while wanted > 0 and not self._done:
            data = self._read_chunked(wanted) if self.chunked else self._read_plain(wanted)
            if not data:
                continue
            self.consumed += len(data)
            if self.consumed > self.limit:
                raise PayloadTooLarge("request body exceeds the limit of %d bytes" % self.limit)
            pieces.append(data)
            wanted -= len(data)
        return b"".join(pieces)

    def _read_plain(self, size: int) -> bytes:
        data = self._rfile.read(min(size, self._left))
        if not data:
            raise BadRequest("client closed the connection before the body ended")
        self._left -= len(data)
        self._done = self._left == 0
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            try:
                self._chunk_left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("malformed chunked body")
            if self._chunk_left == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self._done = True
                return b""
        data = self._rfile.read(min(size, self._chunk_left))
        if not data:
            raise BadRequest("client closed the connection before the body ended")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(16)
        return data

    def drain(self, max_bytes: int = 1 << 20) -> bool:
        """Read and drop what is left (up to ``max_bytes``, whatever the cap) so
        keep-alive can go on; False when the body is longer."""
        if self.length is not None and self.length - self.consumed > max_bytes:
            return False
        self.limit = max(self.limit, self.consumed + max_bytes)
        dropped = 0
        while not self._done and dropped <= max_bytes:
            piece = self.read(READ_CHUNK)
            if not piece:
                break
            dropped += len(piece)
        return self._done


class Handler(BaseHTTPRequestHandler):
    """Shared response helpers; the bridge's own handler extends this."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "radical-orbit"
    sys_version = ""
    #: idle keep-alive connections are closed after this many seconds
    timeout = 120

    def log_message(self, fmt, *args):
        """The access log goes to our logger at debug, secrets in the request line redacted
        (here too, not only by the log formatter: the bridge may run under another set-up)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), redact(fmt % args))

    def parse_request(self) -> bool:
        """``http.server``'s request parsing without the ``email`` package, which costs
        more than the rest of a small proxied call on the bridge. Same rules: HTTP/1.x
        only, header count and line length capped, keep-alive for HTTP/1.1, Expect."""
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = line
        words = line.split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self.send_error(400, "Bad request line %r" % line[:200])
            return False
        self.command, self.path, self.request_version = words
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(505, "HTTP version %s not supported" % self.request_version)
            return False
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        headers = Headers()
        for _ in range(MAX_HEADERS + 1):
            raw = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(raw) > MAX_HEADER_LINE:
                self.send_error(431, "Header line too long")
                return False
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = str(raw, "iso-8859-1").partition(":")
            if not sep or not name.strip() or name != name.strip():
                self.send_error(400, "Bad header line")
                return False
            headers.add(name, value.strip())
        else:
            self.send_error(431, "Too many headers")
            return False
        self.headers = headers
        connection = (headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" or self.request_version == "HTTP/1.1":
            self.close_connection = False
        if (headers.get("Expect") or "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def send_bytes(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: Optional[Dict[str, str]] = None) -> None:
        """Status line, headers and body in one write (no Nagle stall on keep-alive)."""
        head = self._head(status, content_type, headers, "Content-Length: %d" % len(body))
        self.wfile.write(head + body if self.command != "HEAD" else head)
        self.log_request(status, len(body))

    def _head(self, status: int, content_type: str, headers: Optional[Dict[str, str]],
              framing: Optional[str]) -> bytes:
        """The response head. Names and values that come from plugins are checked here:
        no header splitting (CR, LF, NUL), names must be tokens, values must be latin-1."""
        lines = ["%s %d %s" % (self.protocol_version, status, self.responses.get(status, ("",))[0]),
                 "Server: radical-orbit", "Content-Type: %s" % _header_value(content_type)]
        if framing:
            lines.append(framing)
        for name, value in (headers or {}).items():
            if _HEADER_NAME.match(name):
                lines.append("%s: %s" % (name, _header_value(value)))
            else:
                log.warning("dropped a response header with an invalid name %r", name[:80])
        parsed = getattr(self, "headers", None)
        request_id = parsed.get("X-Request-ID") if parsed is not None else None
        if request_id and not (headers and "X-Request-ID" in headers):
            lines.append("X-Request-ID: %s" % _header_value(request_id))
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """http.server's own errors (bad request line, header limits, unsupported method)
        in the common JSON envelope instead of an HTML page."""
        self.close_connection = True
        detail = message or self.responses.get(code, ("error",))[0]
        try:
            self.send_json(envelope(code, detail), code)
        except OSError:
            pass

    def send_json(self, data: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_bytes(status, json.dumps(data).encode(), "application/json", headers)

    def send_stream(self, status: int, chunks: Iterable[bytes], content_type: str,
                    length: Optional[int] = None, headers: Optional[Dict[str, str]] = None) -> None:
        """A body of unknown or large size: Content-Length when known, else chunked
        (HTTP/1.1) or written until the connection closes (HTTP/1.0). HEAD gets the head only."""
        chunked = length is None and self.request_version == "HTTP/1.1"
        if length is None and not chunked:
            self.close_connection = True
        framing = ("Content-Length: %d" % length if length is not None
                   else "Transfer-Encoding: chunked" if chunked else None)
        self.wfile.write(self._head(status, content_type, headers, framing))
        if self.command == "HEAD":
            self.log_request(status, 0)
            return
        sent = 0
        for chunk in chunks:
            if not chunk:
                continue
            sent += len(chunk)
            self.wfile.write(http_chunk(chunk) if chunked else chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        elif length is not None and sent != length:
            self.close_connection = True
        self.log_request(status, sent)


def http_chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_BREAKERS = re.compile(r"[\r\n\x00]")


def _header_value(value: Any) -> str:
    text = _HEADER_BREAKERS.sub(" ", str(value))
    return text.encode("latin-1", "replace").decode("latin-1")
