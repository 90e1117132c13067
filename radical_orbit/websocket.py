"""Server side of the WebSocket protocol (RFC 6455) on top of ``http.server``.

One thread owns each connection and calls :meth:`WebSocket.recv`; any thread
may send.  No extension is ever negotiated (so the RSV bits must stay 0) and
no subprotocol is selected.

The connection runs on a plain socket or on any socket-like object with
``recv_into``, ``sendall``, ``settimeout``, ``shutdown``, ``close`` and
``setsockopt``.  TLS comes from :class:`radical_orbit.tlssocket.TLSSocket`,
which lets one reader and many senders share a TLS session; an
``ssl.SSLSocket`` does not (OpenSSL forbids two threads inside one session),
so never hand one to this module.

Usage from a ``BaseHTTPRequestHandler.do_GET``::

    conn = websocket.accept(self)
    if conn is None:
        return                     # an HTTP error was already answered
    while True:
        message = conn.recv()
        if message is None:
            break                  # closed, lost or failed: nothing to do
        conn.send_text(message.data)
"""

import base64
import binascii
import codecs
import collections
import hashlib
import json
import logging
import os
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tlssocket import TLSSocket

log = logging.getLogger(__name__)

# Opcodes (RFC 6455 section 5.2).
OPCODE_CONT = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
DATA_OPCODES = (OPCODE_TEXT, OPCODE_BINARY)
CONTROL_OPCODES = (OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG)
KNOWN_OPCODES = (OPCODE_CONT,) + DATA_OPCODES + CONTROL_OPCODES

#: payloads at least this long are masked lane by lane (see apply_mask)
LANE_MASK_MIN = 1024

# Close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005          # never sent: "the close frame had no code"
CLOSE_ABNORMAL = 1006           # never sent: "the connection was lost"
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_MANDATORY_EXTENSION = 1010
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TLS_HANDSHAKE = 1015      # never sent
VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011))
APPLICATION_CLOSE_CODES = range(3000, 5000)

# Frame header bits.
FIN_BIT = 0x80
RSV_BITS = 0x70
OPCODE_BITS = 0x0F
MASK_BIT = 0x80
LENGTH_BITS = 0x7F
LENGTH_16 = 126                 # 7-bit length value announcing a 16-bit length
LENGTH_64 = 127                 # 7-bit length value announcing a 64-bit length
MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WEBSOCKET_VERSION = "13"

DEFAULT_MAX_MESSAGE_SIZE = 16 * 2 ** 20
# Bounds the sending of one frame (a smaller idle_timeout takes its place),
# and how long a read waits before checking its deadlines again.
SEND_TIMEOUT = 30.0
# How long close() (or a failed connection) waits for the peer's side of the
# closing handshake before shutting the socket down.
CLOSE_TIMEOUT = 3.0
# Small reads (frame headers) go through a buffer of this size; bigger payload
# reads go straight into the payload buffer in chunks of at most MAX_RECV_CHUNK.
RECV_BUFFER_SIZE = 16 * 1024
MAX_RECV_CHUNK = 1024 * 1024

Message = collections.namedtuple("Message", "opcode data")
Message.__doc__ = "A complete data message: data is str for OPCODE_TEXT, bytes for OPCODE_BINARY."


class WebSocketError(Exception):
    """A WebSocket protocol violation or misuse."""


class ConnectionClosed(WebSocketError):
    """Raised by the send methods once the connection is closing, closed or broken."""


class _ProtocolError(WebSocketError):
    """The peer broke a protocol rule; the connection must be failed with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _ConnectionLost(WebSocketError):
    """EOF, socket error, idle timeout or close deadline while reading."""


def mask_in_place(buffer: bytearray, mask_key: bytes, start: int = 0, offset: int = 0) -> None:
    """XOR ``buffer[start:]`` with the 4-byte masking key (RFC 6455 section 5.3), in place
    and never byte by byte.

    Small payloads go as one big-integer XOR; larger ones as four strided lanes, each
    byte-translated through the XOR table of its key byte: about 0.8 ms per MiB here,
    where converting to and from an integer costs 1.2 and masking a copy 1.15 (a copy
    in, a copy out). ``offset`` is the position of ``buffer[start]`` inside the frame
    payload, so a payload can be unmasked chunk by chunk as it arrives.
    """
    length = len(buffer) - start
    if length <= 0:
        return
    shift = offset % 4
    key = mask_key[shift:] + mask_key[:shift]
    if length < LANE_MASK_MIN:
        pad = (key * (length // 4 + 1))[:length]
        value = int.from_bytes(buffer[start:], "big") ^ int.from_bytes(pad, "big")
        buffer[start:] = value.to_bytes(length, "big")
        return
    for lane in range(4):
        buffer[start + lane::4] = buffer[start + lane::4].translate(_xor_table(key[lane]))


def apply_mask(mask_key: bytes, data, offset: int = 0) -> bytes:
    """``data`` XOR the masking key, as new bytes (see ``mask_in_place``)."""
    out = bytearray(data)
    mask_in_place(out, mask_key, 0, offset)
    return bytes(out)


_XOR_TABLES = {}


def _xor_table(byte: int) -> bytes:
    table = _XOR_TABLES.get(byte)
    if table is None:
        table = _XOR_TABLES[byte] = bytes(b ^ byte for b in range(256))
    return table


def is_valid_close_code(code: int) -> bool:
    """True for the codes a close frame may carry on the wire."""
    return code in VALID_CLOSE_CODES or code in APPLICATION_CLOSE_CODES


def _frame_header(opcode: int, length: int, mask_bit: int = 0) -> bytes:
    if length <= MAX_CONTROL_PAYLOAD:
        return struct.pack("!BB", FIN_BIT | opcode, mask_bit | length)
    if length < 2 ** 16:
        return struct.pack("!BBH", FIN_BIT | opcode, mask_bit | LENGTH_16, length)
    return struct.pack("!BBQ", FIN_BIT | opcode, mask_bit | LENGTH_64, length)


def _encode_frame(opcode: int, payload: bytes) -> bytes:
    """Header and payload of one unmasked, unfragmented server frame."""
    return b"".join((_frame_header(opcode, len(payload)), payload))


def encode_client_frame(opcode: int, payload: bytes) -> bytearray:
    """One unfragmented client frame, masked with a fresh random key (RFC 6455 5.3).

    The endpoint sends its data frames with this: websocket-client masks in pure
    Python at about a third of the speed of ``mask_in_place``. The payload is copied
    once, into the frame, and masked there."""
    key = os.urandom(4)
    frame = bytearray(_frame_header(opcode, len(payload), MASK_BIT))
    frame += key
    start = len(frame)
    frame += payload
    mask_in_place(frame, key, start)
    return frame


def _encode_close_payload(code: int, reason: str) -> bytes:
    """Close frame payload; an over-long reason is cut (at a character) so closing never fails."""
    if not is_valid_close_code(code):
        raise ValueError("invalid close code %r" % (code,))
    encoded = reason.encode("utf-8")
    if len(encoded) > MAX_CLOSE_REASON:
        encoded = encoded[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + encoded


def _parse_close_payload(payload: bytes):
    """Return (code or None, reason) of a received close frame, or raise _ProtocolError."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "close payload of 1 byte")
    (code,) = struct.unpack("!H", payload[:2])
    if not is_valid_close_code(code):
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "invalid close code %d" % code)
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise _ProtocolError(CLOSE_INVALID_DATA, "close reason is not valid UTF-8") from None
    return code, reason


def _check_frame(fin: bool, rsv: int, opcode: int, masked: bool, length: int,
                 message_opcode, message_size: int, max_message_size: int) -> None:
    """The one place that checks a client frame header against the protocol.

    ``message_opcode`` is the opcode of the fragmented message in progress
    (None between messages) and ``message_size`` the bytes it already holds;
    this runs before the payload is read, so an oversize frame is refused
    without buffering it.
    """
    if rsv:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "RSV bits set without a negotiated extension")
    if opcode not in KNOWN_OPCODES:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "unknown opcode %#x" % opcode)
    if not masked:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "client frame is not masked")
    if length >= 2 ** 63:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "64-bit payload length with the high bit set")
    if opcode in CONTROL_OPCODES:
        if not fin:
            raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
        if length > MAX_CONTROL_PAYLOAD:
            raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "control frame payload over 125 bytes")
        return
    if opcode == OPCODE_CONT and message_opcode is None:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
    if opcode != OPCODE_CONT and message_opcode is not None:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "new data frame inside a fragmented message")
    if message_size + length > max_message_size:
        raise _ProtocolError(CLOSE_MESSAGE_TOO_BIG, "message over %d bytes" % max_message_size)


def _header_tokens(handler, name: str):
    """Lower-cased comma-separated tokens of every ``name`` header of the request."""
    values = handler.headers.get_all(name) or []
    return {token.strip().lower() for value in values for token in value.split(",")}


def is_upgrade_request(handler) -> bool:
    """True if the request asks for a WebSocket upgrade (so it should go to accept())."""
    return ("websocket" in _header_tokens(handler, "Upgrade")
            and "upgrade" in _header_tokens(handler, "Connection"))


def _accept_key(key: str) -> str:
    """Sec-WebSocket-Accept value proving we read the client's key."""
    digest = hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _handshake_problem(handler):
    """The one place that validates the opening handshake: None, or (status, detail)."""
    if handler.command != "GET":
        return 400, "WebSocket handshake must use GET"
    try:
        major, minor = handler.request_version.split("/", 1)[1].split(".", 1)
        http_version = (int(major), int(minor))
    except (IndexError, ValueError):
        http_version = (0, 9)
    if http_version < (1, 1):
        return 400, "WebSocket handshake requires HTTP/1.1"
    if "websocket" not in _header_tokens(handler, "Upgrade"):
        return 400, "missing 'Upgrade: websocket' header"
    if "upgrade" not in _header_tokens(handler, "Connection"):
        return 400, "missing 'Connection: Upgrade' header"
    if (handler.headers.get("Sec-WebSocket-Version") or "").strip() != WEBSOCKET_VERSION:
        return 426, "unsupported Sec-WebSocket-Version (only 13 is supported)"
    key = (handler.headers.get("Sec-WebSocket-Key") or "").strip()
    try:
        if len(base64.b64decode(key.encode("ascii"), validate=True)) != 16:
            raise ValueError(key)
    except (ValueError, binascii.Error):
        return 400, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes"
    return None


def _send_http_error(handler, status: int, detail: str) -> None:
    """Refuse the handshake with a small JSON body, then close the HTTP connection."""
    body = json.dumps({"error": True, "status_code": status, "detail": detail}).encode("utf-8")
    handler.close_connection = True
    handler.send_response(status)
    if status == 426:
        handler.send_header("Sec-WebSocket-Version", WEBSOCKET_VERSION)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def _buffered_request_bytes(handler) -> bytes:
    """Bytes the client sent after its request headers that http.server already buffered.

    A compliant client waits for the 101 before sending frames, but nothing
    it sent may be lost, so peek at the buffer without blocking.
    """
    sock = handler.connection
    timeout = sock.gettimeout()
    try:
        sock.settimeout(0.0)
        return bytes(handler.rfile.peek())
    except (OSError, ValueError, AttributeError):
        return b""
    finally:
        sock.settimeout(timeout)


def accept(handler, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
           idle_timeout: "float | None" = None, headers: "dict | None" = None) -> "WebSocket | None":
    """Complete the opening handshake on ``handler`` and return the connection.

    On a bad handshake an HTTP error (400, or 426 for the version) is answered
    here and None is returned.  ``headers`` are extra response headers for the
    101.  ``idle_timeout`` seconds without a single byte from the peer count as
    a dead connection (see WebSocket.recv).
    """
    problem = _handshake_problem(handler)
    if problem is not None:
        status, detail = problem
        log.debug("refusing WebSocket handshake from %s: %s", handler.client_address, detail)
        _send_http_error(handler, status, detail)
        return None
    pending = _buffered_request_bytes(handler)
    handler.close_connection = True
    # Clients reject a "HTTP/1.0 101", which http.server's default protocol_version would send.
    handler.protocol_version = "HTTP/1.1"
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", _accept_key(handler.headers["Sec-WebSocket-Key"].strip()))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.flush()
    sock = handler.connection
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return WebSocket(sock, max_message_size=max_message_size, idle_timeout=idle_timeout, pending=pending)


class WebSocket:
    """An open server-side WebSocket connection.

    ``recv`` belongs to the one thread that owns the connection; ``send_*``,
    ``ping`` and ``close`` may be called from any thread.

    ``last_seen`` is the time.monotonic() of the last frame received, for
    liveness checks.  ``close_code`` (and ``close_reason``) tell how the
    connection ended: the code of the first close frame sent or received,
    1005 for a close frame without a code, 1006 for a lost connection.
    """

    def __init__(self, sock: "socket.socket | TLSSocket", max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 idle_timeout: "float | None" = None, pending: bytes = b"") -> None:
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive or None")
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self.last_seen = time.monotonic()
        self.close_code = None
        self.close_reason = ""
        self._sock = sock
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._done = threading.Event()       # set once the socket is shut down
        self._close_sent = False
        self._close_deadline = None
        self._read_deadline = None
        self._last_byte = self.last_seen
        self._rbuf = bytearray(max(RECV_BUFFER_SIZE, len(pending)))
        self._rview = memoryview(self._rbuf)
        self._rbuf[:len(pending)] = pending
        self._rstart = 0
        self._rend = len(pending)
        # One socket timeout for the reader and the senders, set once: it bounds
        # each frame's send, and a read wait wakes up at least this often to
        # check the idle and close deadlines.
        self._tick = SEND_TIMEOUT if idle_timeout is None else min(idle_timeout, SEND_TIMEOUT)
        sock.settimeout(self._tick)

    @property
    def closed(self) -> bool:
        """True once a close frame was sent or the connection is gone."""
        return self._close_sent or self._done.is_set()

    # ----------------------------------------------------------------- sending

    def send_text(self, text: str) -> None:
        """Send one text message (raises ConnectionClosed once closing).

        A str that is not encodable (lone surrogates) raises UnicodeEncodeError.
        """
        self._send_frame(OPCODE_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        """Send one binary message (raises ConnectionClosed once closing)."""
        self._send_frame(OPCODE_BINARY, bytes(data))

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping; the pong only refreshes ``last_seen``."""
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError("ping payload over %d bytes" % MAX_CONTROL_PAYLOAD)
        self._send_frame(OPCODE_PING, bytes(payload))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake (once), wait briefly for the peer's close, shut down.

        Safe to call from any thread and more than once.  If another thread is
        blocked in recv(), that thread reads the peer's close; otherwise this
        one reads (and drops) frames until it arrives, at most CLOSE_TIMEOUT.
        """
        payload = _encode_close_payload(code, reason)
        if not self._send_close(code, payload):
            return
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while not self._done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._read_lock.acquire(blocking=False):
                try:
                    self._close_deadline = deadline
                    self._receive()
                finally:
                    self._read_lock.release()
                break
            self._done.wait(min(remaining, 0.05))
        self._shutdown()

    def _send_close(self, code: int, payload: bytes) -> bool:
        """Send a close frame unless one was sent already; True if this call sent it."""
        try:
            self._send_frame(OPCODE_CLOSE, payload, code)
        except ConnectionClosed:
            return False
        return True

    def _send_frame(self, opcode: int, payload: bytes, close_code: "int | None" = None) -> None:
        """Write one whole frame with a single sendall under the write lock."""
        frame = _encode_frame(opcode, payload)
        with self._write_lock:
            if self._close_sent or self._done.is_set():
                raise ConnectionClosed("WebSocket connection is closed")
            if opcode == OPCODE_CLOSE:
                self._close_sent = True
                if self.close_code is None:
                    self.close_code = close_code
            try:
                self._sock.sendall(frame)
            except OSError as exc:
                self._lost()
                raise ConnectionClosed("WebSocket send failed: %s" % (exc,)) from exc

    # --------------------------------------------------------------- receiving

    def buffered(self) -> int:
        """Bytes already received but not yet returned by ``recv`` (here, and inside TLS):
        zero means the next ``recv`` may block, so work batched until then is due now."""
        pending = getattr(self._sock, "pending", None)
        return self._rend - self._rstart + (pending() if pending is not None else 0)

    def recv(self, deadline: "float | None" = None) -> "Message | None":
        """Return the next data message, or None once the connection is over.

        Control frames are answered here.  Problems caused by the peer never
        raise: the connection is failed with the right close code (or counted
        as lost, code 1006) and None is returned.

        ``deadline`` (a time.monotonic() value) bounds the wait for the whole
        message, whatever control frames arrive meanwhile (pings keep a
        connection alive, not a silent peer's turn): past it the connection is
        failed with 1008 (policy violation).  While it runs, sends share its
        narrower socket timeout.
        """
        with self._read_lock:
            if self._done.is_set():
                return None
            self._read_deadline = deadline
            try:
                return self._receive()
            finally:
                if deadline is not None:
                    self._read_deadline = None
                    try:
                        self._sock.settimeout(self._tick)
                    except OSError:
                        pass

    def _receive(self) -> "Message | None":
        """recv() without the lock: also used by close() to await the peer's close."""
        try:
            while True:
                message = self._read_message()
                if message is None or not self._close_sent:
                    return message
        except _ProtocolError as exc:
            log.debug("failing WebSocket connection (%d): %s", exc.code, exc.reason)
            self._fail(exc.code, exc.reason)
        except (_ConnectionLost, OSError) as exc:
            log.debug("WebSocket connection lost: %s", exc)
            self._lost()
        return None

    def _read_message(self) -> "Message | None":
        """Read frames until a whole data message (or None after a close frame)."""
        message_opcode = None
        message_size = 0
        parts = []
        decoder = None
        while True:
            first, second = self._read_exact(2)
            fin = bool(first & FIN_BIT)
            opcode = first & OPCODE_BITS
            length = second & LENGTH_BITS
            if length == LENGTH_16:
                (length,) = struct.unpack("!H", self._read_exact(2))
            elif length == LENGTH_64:
                (length,) = struct.unpack("!Q", self._read_exact(8))
            _check_frame(fin, first & RSV_BITS, opcode, bool(second & MASK_BIT), length,
                         message_opcode, message_size, self.max_message_size)
            mask_key = bytes(self._read_exact(4))

            if opcode in CONTROL_OPCODES:
                payload = self._read_payload(length, mask_key)
                self.last_seen = time.monotonic()
                if not self._on_control(opcode, payload):
                    return None
                continue

            if opcode != OPCODE_CONT:
                message_opcode = opcode
                if opcode == OPCODE_TEXT:
                    decoder = codecs.getincrementaldecoder("utf-8")()
            if decoder is not None:
                parts.append(self._read_text_payload(length, mask_key, decoder, fin))
            else:
                parts.append(self._read_payload(length, mask_key))
            message_size += length
            self.last_seen = time.monotonic()
            if fin:
                if decoder is not None:
                    return Message(OPCODE_TEXT, "".join(parts))
                return Message(OPCODE_BINARY, b"".join(parts))

    def _on_control(self, opcode: int, payload: bytes) -> bool:
        """Answer a control frame; False once the connection is closed."""
        if opcode == OPCODE_PING:
            try:
                self._send_frame(OPCODE_PONG, payload)
            except ConnectionClosed:
                pass    # no pong after our close frame; a broken socket shows on the next read
        elif opcode == OPCODE_CLOSE:
            code, reason = _parse_close_payload(payload)
            if self.close_code is None:
                self.close_code = CLOSE_NO_STATUS if code is None else code
                self.close_reason = reason
            echo = CLOSE_NORMAL if code is None else code
            self._send_close(echo, struct.pack("!H", echo))
            # The server closes the TCP connection first (RFC 6455 section 7.1.1).
            self._shutdown()
            return False
        return True

    def _read_text_payload(self, length: int, mask_key: bytes, decoder, final: bool) -> str:
        """Read a text frame payload, validating UTF-8 as each chunk arrives (fail fast)."""
        pieces = []
        scratch = memoryview(bytearray(min(length, MAX_RECV_CHUNK)))
        got = 0
        try:
            while got < length:
                count = self._fill(scratch[:min(length - got, len(scratch))])
                pieces.append(decoder.decode(apply_mask(mask_key, scratch[:count], got)))
                got += count
            if final:
                pieces.append(decoder.decode(b"", True))
        except UnicodeDecodeError:
            raise _ProtocolError(CLOSE_INVALID_DATA, "text message is not valid UTF-8") from None
        return "".join(pieces)

    def _read_payload(self, length: int, mask_key: bytes) -> bytearray:
        """Read a payload in bounded chunks into one preallocated buffer, unmask it there
        at once (the message's ``b"".join`` makes the bytes)."""
        buffer = bytearray(length)
        view = memoryview(buffer)
        got = 0
        while got < length:
            got += self._fill(view[got:got + min(length - got, MAX_RECV_CHUNK)])
        view.release()
        mask_in_place(buffer, mask_key)
        return buffer

    def _read_exact(self, count: int) -> bytearray:
        """Exactly ``count`` bytes from the connection."""
        result = bytearray(count)
        view = memoryview(result)
        got = 0
        while got < count:
            got += self._fill(view[got:])
        return result

    def _fill(self, dest: memoryview) -> int:
        """Put at least one byte into ``dest``: from the read buffer, or one recv_into."""
        if self._rstart == self._rend:
            if len(dest) >= RECV_BUFFER_SIZE:
                return self._recv_into(dest)
            self._rstart = 0
            self._rend = self._recv_into(self._rview[:RECV_BUFFER_SIZE])
        count = min(len(dest), self._rend - self._rstart)
        dest[:count] = self._rview[self._rstart:self._rstart + count]
        self._rstart += count
        return count

    def _recv_into(self, dest: memoryview) -> int:
        """One receive; waits in ticks so the idle and close deadlines are checked.

        A socket timeout is never fatal by itself: only the deadlines decide.
        """
        while True:
            if self._close_deadline is not None:
                # Closing: _close_sent keeps every sender out of sendall now,
                # so the reader alone may narrow the shared timeout.
                self._sock.settimeout(max(min(self._tick, self._close_deadline - time.monotonic()), 0.001))
            elif self._read_deadline is not None:
                remaining = self._read_deadline - time.monotonic()
                if remaining <= 0:
                    raise _ProtocolError(CLOSE_POLICY_VIOLATION, "no message in time")
                self._sock.settimeout(min(self._tick, remaining))
            try:
                count = self._sock.recv_into(dest)
            except socket.timeout:
                now = time.monotonic()
                if self._close_deadline is not None and now >= self._close_deadline:
                    raise _ConnectionLost("no close frame from the peer in time") from None
                if self.idle_timeout is not None and now - self._last_byte >= self.idle_timeout:
                    raise _ConnectionLost("idle for %.1f s" % (now - self._last_byte)) from None
                continue
            if not count:
                raise _ConnectionLost("connection closed by the peer")
            self._last_byte = time.monotonic()
            return count

    # ----------------------------------------------------------------- closing

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: close frame with ``code``, then hang up.

        The stream may be out of sync (we stopped mid-frame), so what the peer
        still sends is read raw and dropped rather than parsed; reading it
        keeps the kernel from answering with a reset that could destroy our
        close frame before the peer reads it.
        """
        self._send_close(code, _encode_close_payload(code, reason))
        self._shutdown_socket(socket.SHUT_WR)
        self._close_deadline = time.monotonic() + CLOSE_TIMEOUT
        scratch = self._rview[:RECV_BUFFER_SIZE]
        try:
            while True:
                self._recv_into(scratch)
        except (_ConnectionLost, OSError):
            pass
        self._shutdown()

    def _lost(self) -> None:
        """The connection died without a closing handshake (code 1006)."""
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL
        self._shutdown()

    def _shutdown(self) -> None:
        """Shut the socket down (which also wakes a blocked reader); the server closes it."""
        self._close_sent = True
        self._done.set()
        self._shutdown_socket(socket.SHUT_RDWR)

    def _shutdown_socket(self, how: int) -> None:
        """TCP-level shutdown (TLSSocket.shutdown is TCP-level too, leaving the TLS
        session in place for a concurrent reader); errors are ignored."""
        try:
            self._sock.shutdown(how)
        except OSError:
            pass
