"""HTTP/1.1 plumbing on top of ``http.server``: the threaded server (admission, TLS
handshake in the connection thread), the connection's deadline-bound reader, the
request head (read by framing.py) and the response writers."""
import errno
import io
import json
import logging
import re
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, NamedTuple, Optional

from ..errors import envelope
from ..logs import redact
from ..tlssocket import TLSSocket
from .admission import CUT, Admission, Refuser, Ticket, busy_response, refusal_detail
from .framing import MAX_HEAD_BYTES, MAX_HEADERS, NO_BODY, BodyReader, Framing, HeadError, read_head

log = logging.getLogger("radical_orbit.bridge.http")

#: default seconds to receive a whole request head (and a TLS handshake); an
#: unauthenticated connection also gets no longer to start its next request
HEAD_TIMEOUT = 10.0
#: default seconds an authenticated keep-alive connection may idle between requests
KEEPALIVE_TIMEOUT = 120.0
#: seconds the accept loop rests when the process is out of file descriptors
FD_EXHAUSTED_PAUSE = 0.05
#: after an answer that left an authenticated request's body unread (an early error),
#: at most this long and this many bytes of the body are read and dropped behind a
#: half-close: closing with unread bytes would send a reset, and a client still
#: sending would lose the answer with it (RFC 9112 9.6)
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 << 20
#: a head cap below this would refuse ordinary browsers' requests
MIN_HEAD_BYTES = 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Limits(NamedTuple):
    """The bounds on reading a request (bridge settings of the same names)."""
    head_timeout: float = HEAD_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    max_head_bytes: int = MAX_HEAD_BYTES
    max_headers: int = MAX_HEADERS

    def check(self) -> "Limits":
        """These limits, or ValueError for one that would refuse every request."""
        if not (self.head_timeout > 0 and self.keepalive_timeout > 0):
            raise ValueError("--head-timeout and the keep-alive timeout must be positive")
        if self.max_head_bytes < MIN_HEAD_BYTES or self.max_headers < 1:
            raise ValueError("--max-head-bytes must be at least %d and the header count at least 1"
                             % MIN_HEAD_BYTES)
        return self


class Server(ThreadingHTTPServer):
    """Thread per admitted connection; a TLS handshake happens in that thread, so one
    slow client cannot stall the accept loop. Which connections get a thread is
    admission.py's call; the others are answered 503 from here."""

    daemon_threads = True
    block_on_close = False   # stopping must not wait for idle keep-alive connections
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, handler, tls: Optional[ssl.SSLContext] = None,
                 limits: Optional[Limits] = None, admission: Optional[Admission] = None,
                 bind_and_activate: bool = True):
        self.tls = tls
        self.limits = limits or Limits()
        self.admission = admission or Admission()
        self.refuser = Refuser(tls)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, handler, bind_and_activate)

    def get_request(self):
        """accept(); out of file descriptors, pause the accept loop briefly rather than
        spin on a listening socket that stays readable."""
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self.admission.stats.note("file-descriptor limit", "-")
                time.sleep(FD_EXHAUSTED_PAUSE)
            raise

    def process_request(self, request, client_address):
        ticket, refused = self.admission.admit(client_address[0], request)
        if ticket is None:
            self.refuser.refuse(request, refused)
            return
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address, ticket),
                                  name="http-%s:%s" % client_address[:2], daemon=True)
        try:
            thread.start()
        except RuntimeError:        # no thread to be had (memory, or the process's limit)
            self.admission.release(ticket)
            self.admission.stats.note("thread limit", client_address[0])
            self.refuser.refuse(request, "thread limit")

    def _serve_connection(self, request, client_address, ticket: Ticket) -> None:
        try:
            conn = request
            if self.tls is not None:
                conn = TLSSocket(request, self.tls, server_side=True)
                try:
                    conn.do_handshake(self.limits.head_timeout)
                except (OSError, ssl.SSLError) as exc:
                    log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                    return
            handler = self.RequestHandlerClass(conn, client_address, self, ticket)
            if handler.unread_body:
                linger(request)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.admission.release(ticket)
            self.shutdown_request(request)

    def service_actions(self):
        """Called by the accept loop several times a second: the refusal summary."""
        summary = self.admission.stats.summary()
        if summary:
            log.log(*summary)

    def server_close(self):
        super().server_close()
        self.refuser.stop()

    def handle_error(self, request, client_address):
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


def linger(sock: socket.socket) -> None:
    """Half-close after the answer, then read and drop what the client still sends until
    it closes too, for at most LINGER_SECONDS and LINGER_BYTES (the caller closes)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        left = LINGER_BYTES
        while left > 0:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return
            sock.settimeout(wait)
            data = sock.recv(min(left, 1 << 16))
            if not data:
                return
            left -= len(data)
    except OSError:
        pass


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError("cannot load the certificate %s with the key %s: %s (both must be PEM, "
                         "and the key the certificate's)" % (cert, key, exc))
    # Session tickets arrive after the handshake, while a client may already be reading
    # and writing from two threads; clients that share one TLS object that way trip on them.
    ctx.num_tickets = 0
    return ctx


class DeadlineReader(io.RawIOBase):
    """The connection's raw reader. While ``deadline`` (time.monotonic) is set no read
    waits past it, however slowly the peer trickles its bytes: a per-read timeout alone
    lets one byte every few seconds hold a connection forever. ``arm`` seconds, if set,
    start such a deadline at the next bytes that arrive (the first of a keep-alive
    request, whose idle wait has the socket's own timeout). ``received`` counts bytes."""

    def __init__(self, sock, base_timeout: Optional[float]):
        super().__init__()
        self._sock = sock
        self.base_timeout = base_timeout
        self.deadline: Optional[float] = None
        self.arm: Optional[float] = None
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> Optional[int]:
        try:
            if self.deadline is None:
                n = self._sock.recv_into(buffer)
            else:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("deadline passed")
                self._sock.settimeout(left)
                try:
                    n = self._sock.recv_into(buffer)
                finally:
                    self._sock.settimeout(self.base_timeout)
        except BlockingIOError:     # a non-blocking peek (the WebSocket handshake's)
            return None
        if n and self.arm is not None:
            self.deadline, self.arm = time.monotonic() + self.arm, None
        self.received += n
        return n


class SocketWriter(io.BufferedIOBase):
    """Unbuffered: each write goes straight to the socket (as http.server's wfile)."""

    def __init__(self, sock):
        super().__init__()
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._sock.sendall(data)
        return memoryview(data).nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


def _tokens(value: str) -> List[str]:
    return [t.strip().lower() for t in value.split(",")]


class Handler(BaseHTTPRequestHandler):
    """Request heads read strictly (framing.py) under deadlines, the body through
    ``body_reader``, and the shared response helpers; the bridge's handler extends this."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "radical-orbit"
    sys_version = ""

    def __init__(self, request, client_address, server, ticket: Optional[Ticket] = None):
        self.ticket = ticket
        self.limits: Limits = getattr(server, "limits", None) or Limits()
        self.framing: Framing = NO_BODY
        self.expect_continue = False
        self.request_body: Optional[BodyReader] = None
        self._next_start = ticket.waiting_since if ticket is not None else time.monotonic()
        self._requests_read = 0       # requests read on this connection
        #: the connection ends with an authenticated request's body unread (see linger)
        self.unread_body = False
        super().__init__(request, client_address, server)

    @property
    def _authenticated(self) -> bool:
        return self.ticket is None or self.ticket.authenticated

    def setup(self):
        self.connection = self.request
        timeout = self.limits.keepalive_timeout if self._authenticated else self.limits.head_timeout
        self.connection.settimeout(timeout)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self._reader = DeadlineReader(self.connection, timeout)
        self.rfile = io.BufferedReader(self._reader)
        self.wfile = SocketWriter(self.connection)

    def log_message(self, fmt, *args):
        """The access log goes to our logger at debug, secrets in the request line redacted
        (here too, not only by the log formatter: the bridge may run under another set-up)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), redact(fmt % args))

    # -- reading requests ----------------------------------------------------------------
    def handle_one_request(self):
        self.command = None
        self.request_version = self.default_request_version
        self.requestline = ""
        self.headers = None
        self.framing = NO_BODY
        self.expect_continue = False
        self.request_body = None
        self.close_connection = True
        try:
            if not self._read_head():
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(501, "method %s not implemented" % self.command)
                return
            method()
            body = self.request_body
            if self.framing is not NO_BODY and (body is None or not body.done):
                self.close_connection = True    # what is left would be read as the next request
                self.unread_body = self._authenticated
        except socket.timeout as exc:
            self.log_error("request timed out: %r", exc)
            self.close_connection = True
        finally:
            self._next_start = time.monotonic()

    def _read_head(self) -> bool:
        """Read and check the next request head under its deadline; False when the
        connection is to close (an error answered, a timeout, the client gone, shed)."""
        limits, ticket, reader = self.limits, self.ticket, self._reader
        # only an unauthenticated connection waiting for a head can be shed
        admission = self.server.admission if not self._authenticated else None
        if admission is None:
            reader.deadline, reader.arm = None, limits.head_timeout
        else:
            admission.await_head(ticket)
            reader.deadline, reader.arm = self._next_start + limits.head_timeout, None
        before = reader.received
        head = error = None
        timed_out = False
        try:
            head = read_head(self.rfile, limits.max_head_bytes, limits.max_headers)
        except HeadError as exc:
            error = exc
        except socket.timeout:
            timed_out = True
        except (OSError, ValueError):
            pass
        finally:
            shed = admission is not None and not admission.head_done(ticket)
        if shed:
            # a fresh connection or a begun request gets the 503; an idle keep-alive
            # connection is closed as quietly as at its idle timeout (a client takes an
            # answer to no request for an error)
            if not self._requests_read or reader.received > before:
                self._write_quietly(busy_response(refusal_detail("shed for a newer connection")))
            return False
        if timed_out:
            if reader.received > before:    # a head had begun: too slow, not just idle
                if ticket is not None:
                    self.server.admission.stats.note(CUT, self.client_address[0])
                self.send_error(408, "request head not received within %g s" % limits.head_timeout)
            return False
        if error is not None:
            self.send_error(error.status_code, error.detail)
            return False
        if head is None:
            return False
        self.requestline, self.command, self.path, self.request_version, headers, self.framing = head
        self._requests_read += 1
        self.headers = headers
        if admission is None:
            reader.deadline = reader.arm = None
        connection = headers.get("Connection")
        if connection is None or connection == "keep-alive":     # what clients send: no parsing
            self.close_connection = connection is None and head.version == "HTTP/1.0"
        else:
            tokens = _tokens(connection)
            self.close_connection = "close" in tokens or (
                head.version == "HTTP/1.0" and "keep-alive" not in tokens)
        expect = headers.get("Expect")
        self.expect_continue = (expect is not None and head.version == "HTTP/1.1"
                                and _tokens(expect) == ["100-continue"])
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        return True

    def authenticated(self) -> None:
        """A request on this connection carried the token (the routes call this after
        their auth check): the connection leaves the unauthenticated budget and its
        short deadlines for good."""
        ticket = self.ticket
        if ticket is not None and not ticket.authenticated:
            self.server.admission.authenticated(ticket)
            self.connection.settimeout(self.limits.keepalive_timeout)
            self._reader.base_timeout = self.limits.keepalive_timeout
        self._reader.deadline = self._reader.arm = None

    def body_reader(self, limit: int) -> BodyReader:
        """The request's body, by the framing its head declared; ``100 Continue`` goes out
        only if and when the body is first read, that is after the request passed auth."""
        self.request_body = BodyReader(self.rfile, self.framing, limit,
                                       self._send_continue if self.expect_continue else None)
        return self.request_body

    def _send_continue(self) -> None:
        self.wfile.write(_CONTINUE)

    def _write_quietly(self, data: bytes) -> None:
        self.close_connection = True
        try:
            self.wfile.write(data)
        except OSError:
            pass

    # -- writing responses -----------------------------------------------------------------
    def send_bytes(self, status: int, body: bytes, content_type: str = "application/json",
                   headers: Optional[Dict[str, str]] = None) -> None:
        """Status line, headers and body in one write (no Nagle stall on keep-alive).
        1xx, 204 and 304 answers never carry a body, whatever they were given."""
        if bodyless(status):
            self.wfile.write(self._head(status, None, headers, None))
            self.log_request(status, 0)
            return
        head = self._head(status, content_type, headers, "Content-Length: %d" % len(body))
        self.wfile.write(head + body if self.command != "HEAD" else head)
        self.log_request(status, len(body))

    def _head(self, status: int, content_type: Optional[str], headers: Optional[Dict[str, str]],
              framing: Optional[str]) -> bytes:
        """The response head. Names and values that come from plugins are checked here:
        no header splitting (CR, LF, NUL), names must be tokens, values must be latin-1."""
        lines = ["%s %d %s" % (self.protocol_version, status, self.responses.get(status, ("",))[0]),
                 "Server: radical-orbit"]
        if content_type is not None:
            lines.append("Content-Type: %s" % _header_value(content_type))
        if framing:
            lines.append(framing)
        for name, value in (headers or {}).items():
            if _HEADER_NAME.fullmatch(name):
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
        (HTTP/1.1) or written until the connection closes (HTTP/1.0). HEAD, 1xx, 204 and
        304 get the head only (the caller cancels what it would have sent)."""
        if bodyless(status):
            return self.send_bytes(status, b"", content_type, headers)
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
            if length is not None and sent + len(chunk) > length:
                # more than the Content-Length said: what follows it would be read as the
                # next answer on this connection (response splitting by a plugin or endpoint)
                log.warning("[%s] the answer's body is longer than its length %d: cut there, "
                            "connection closed", getattr(self, "request_id", None) or "-", length)
                self.wfile.write(chunk[:length - sent])
                sent = length
                self.close_connection = True
                break
            sent += len(chunk)
            self.wfile.write(http_chunk(chunk) if chunked else chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        elif length is not None and sent != length:
            self.close_connection = True
        self.log_request(status, sent)


def bodyless(status: int) -> bool:
    """Answers that never have a body (RFC 9110 6.4.1): 1xx, 204, 304."""
    return status < 200 or status in (204, 304)


def http_chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_BREAKERS = re.compile(r"[\r\n\x00]")


def _header_value(value: Any) -> str:
    text = _HEADER_BREAKERS.sub(" ", str(value))
    return text.encode("latin-1", "replace").decode("latin-1")
