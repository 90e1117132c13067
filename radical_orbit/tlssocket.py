"""TLS over a plain socket through memory BIOs, safe for one reader and many writers.

OpenSSL forbids using one SSL object from two threads at once, and
``ssl.SSLSocket`` does not serialise ``recv`` against ``sendall``: a WebSocket
read by one thread while workers write to it corrupts the TLS records ("bad
record mac"). Here the SSL object is touched only under a short lock, while the
blocking network I/O happens outside it: a reader waiting for bytes never holds
up a writer, and ciphertext leaves in the order it was produced.

The class offers the socket methods that ``http.server``, our WebSocket layer
and ``websocket-client`` use.
"""
import io
import socket
import ssl
import threading
import time
from typing import Optional

RECV_SIZE = 256 * 1024


class TLSSocket:
    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_side: bool,
                 server_hostname: Optional[str] = None):
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self._tls_lock = threading.Lock()     # guards the SSL object and the BIOs
        self._send_lock = threading.Lock()    # keeps ciphertext in order on the wire
        self._closed = False          # websocket-client reads this before closing a socket

    # -- handshake ----------------------------------------------------------------------
    def do_handshake(self, timeout: float) -> None:
        """Complete the handshake within ``timeout`` s; raises ssl.SSLError or OSError."""
        deadline = time.monotonic() + timeout
        previous = self._sock.gettimeout()
        try:
            while True:
                with self._tls_lock:
                    try:
                        self._tls.do_handshake()
                        done = True
                    except ssl.SSLWantReadError:
                        done = False
                self._flush()
                if done:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("TLS handshake timed out")
                self._sock.settimeout(left)
                data = self._sock.recv(RECV_SIZE)
                if not data:
                    raise ssl.SSLEOFError("peer closed the connection during the TLS handshake")
                with self._tls_lock:
                    self._incoming.write(data)
        finally:
            self._sock.settimeout(previous)

    # -- writing --------------------------------------------------------------------------
    def _flush(self) -> None:
        with self._send_lock:
            with self._tls_lock:
                data = self._outgoing.read()
            if data:
                self._sock.sendall(data)

    def _try_flush(self) -> None:
        """Send what reading produced (alerts, key updates) unless a writer is busy:
        that writer sends it with its own records."""
        if self._send_lock.acquire(blocking=False):
            try:
                with self._tls_lock:
                    data = self._outgoing.read()
                if data:
                    self._sock.sendall(data)
            finally:
                self._send_lock.release()

    def sendall(self, data) -> None:
        with self._send_lock:
            with self._tls_lock:
                self._tls.write(data)
                out = self._outgoing.read()
            self._sock.sendall(out)

    def send(self, data) -> int:
        self.sendall(data)
        return len(data)

    # -- reading --------------------------------------------------------------------------
    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of plaintext; b"" at the end of the stream."""
        while True:
            with self._tls_lock:
                try:
                    return self._tls.read(size)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    return b""
                produced = self._outgoing.pending
            if produced:
                self._try_flush()
            data = self._sock.recv(RECV_SIZE)
            if not data:
                return b""
            with self._tls_lock:
                self._incoming.write(data)

    def recv_into(self, buffer, nbytes: int = 0) -> int:
        view = memoryview(buffer)
        data = self.recv(nbytes or len(view))
        view[:len(data)] = data
        return len(data)

    def pending(self) -> int:
        with self._tls_lock:
            return self._tls.pending()

    def makefile(self, mode: str = "r", buffering: Optional[int] = None, **_kwargs):
        raw = socket.SocketIO(self, "rb" if "r" in mode else "wb")
        if buffering == 0:
            return raw
        size = io.DEFAULT_BUFFER_SIZE if buffering in (None, -1) else buffering
        return io.BufferedReader(raw, size) if "r" in mode else io.BufferedWriter(raw, size)

    def _decref_socketios(self) -> None:
        """Called by socket.SocketIO on close; the socket itself is closed by its owner."""

    # -- the rest is the plain socket's ---------------------------------------------------------
    def settimeout(self, value: Optional[float]) -> None:
        self._sock.settimeout(value)

    def gettimeout(self) -> Optional[float]:
        return self._sock.gettimeout()

    def setsockopt(self, *args) -> None:
        self._sock.setsockopt(*args)

    def getsockopt(self, *args):
        return self._sock.getsockopt(*args)

    def fileno(self) -> int:
        return self._sock.fileno()

    def getpeername(self):
        return self._sock.getpeername()

    def getsockname(self):
        return self._sock.getsockname()

    def getpeercert(self, binary_form: bool = False):
        return self._tls.getpeercert(binary_form)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._closed = True
        self._sock.close()
