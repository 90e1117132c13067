"""Dialing the bridge: one WebSocket (websocket-client), the registration handshake,
and the classification of failures into "retry later" and "fatal"."""
import logging
import socket
import ssl
import threading
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

import websocket

from .. import protocol
from ..tls import pinned_context
from ..tlssocket import TLSSocket
from ..websocket import OPCODE_BINARY, encode_client_frame

log = logging.getLogger("radical_orbit.endpoint.link")

CONNECT_TIMEOUT = 10.0


class Fatal(Exception):
    """The endpoint cannot go on: bad token, TLS failure, refused for good."""


class Retry(Exception):
    """This attempt failed; try again after a backoff."""


def ws_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    if scheme not in ("ws", "wss") or not sep:
        raise ValueError("bridge URL %r must start with http://, https://, ws:// or wss://" % url)
    return "%s://%s/register" % (scheme, rest.rstrip("/"))


class Link:
    """A registered connection to the bridge. Sends are thread-safe."""

    def __init__(self, sock: websocket.WebSocket, welcome: Dict[str, Any]):
        self.sock = sock
        self.resume = welcome.get("resume")
        self.settings = dict(protocol.DEFAULT_SETTINGS)
        self.settings.update(welcome.get("settings") or {})
        notes = welcome.get("notes")
        #: the bridge acknowledges notifications (older bridges do not: sent is delivered)
        self.acks = isinstance(notes, dict)
        acked = notes.get("acked") if self.acks else 0
        self.notes_acked = acked if isinstance(acked, int) else 0
        self.closed = threading.Event()

    def send(self, kind: str, **fields: Any) -> bool:
        """False when the link is gone (the caller drops or buffers)."""
        return self.send_encoded(protocol.encode(kind, **fields))

    def send_encoded(self, message: bytes) -> bool:
        """One binary frame, built by ``encode_client_frame`` (a faster mask than
        websocket-client's) and written under websocket-client's own send lock, so it
        never interleaves with the pings and close frames the library sends."""
        if self.closed.is_set():
            return False
        frame = encode_client_frame(OPCODE_BINARY, message)
        try:
            with self.sock.lock:
                self.sock.sock.sendall(frame)
            return True
        except (websocket.WebSocketException, OSError, AttributeError):
            self.abort()            # a half-written frame leaves the stream unusable
            return False

    def recv(self) -> Optional[Dict[str, Any]]:
        """The next message, checked against the schema; None when the link closed.
        Raises ProtocolError for a message that breaks the protocol."""
        try:
            data = self.sock.recv()
        except websocket.WebSocketTimeoutException:
            log.warning("bridge silent for %.0f s: reconnecting", self.sock.gettimeout() or 0)
            return None
        except (websocket.WebSocketException, OSError) as exc:
            log.debug("link closed: %s", exc)
            return None
        if not data:
            return None
        return protocol.decode(data, protocol.TO_ENDPOINT)

    def ping(self) -> None:
        try:
            self.sock.ping()
        except (websocket.WebSocketException, OSError):
            self.abort()

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.close(timeout=1)
        except Exception:
            pass

    def abort(self) -> None:
        """Unblock a reader at once (signal handlers, shutdown)."""
        self.closed.set()
        try:
            self.sock.abort()
        except Exception:
            pass


Address = Tuple[str, int]


def _raw_socket(target: str, address: Optional[Address]) -> socket.socket:
    """TCP to the URL's host, or to ``address`` (an ssh tunnel's end on this host) while
    TLS and the HTTP Host header still name the URL's host."""
    parts = urlsplit(target)
    default = 443 if target.startswith("wss:") else 80
    raw = socket.create_connection(address or (parts.hostname, parts.port or default),
                                   timeout=CONNECT_TIMEOUT)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return raw


def _tls_socket(target: str, cert: Optional[str], address: Optional[Address] = None) -> TLSSocket:
    """Our own TLS socket: websocket-client's would be read and written from different
    threads at once, which OpenSSL does not allow (see radical_orbit.tlssocket)."""
    parts = urlsplit(target)
    raw = _raw_socket(target, address)
    tls = TLSSocket(raw, pinned_context(cert), server_side=False, server_hostname=parts.hostname)
    try:
        tls.do_handshake(CONNECT_TIMEOUT)
    except BaseException:
        raw.close()
        raise
    return tls


def dial(url: str, cert: Optional[str], token: Optional[str], hello: Dict[str, Any],
         address: Optional[Address] = None) -> Link:
    """Connect (to ``address`` instead of the URL's host and port when given: a tunnel),
    authenticate and register; raises Retry or Fatal."""
    target = ws_url(url)
    encoded = protocol.encode(protocol.HELLO, **hello)
    try:
        protocol.decode(encoded, (protocol.HELLO,))    # what the bridge would refuse
    except protocol.ProtocolError as exc:
        raise Fatal("this endpoint cannot register: %s (fewer or smaller plugins?)" % exc.detail)
    sock = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
    headers = ["Authorization: Bearer %s" % token] if token else []
    try:
        if target.startswith("wss:"):
            pre = _tls_socket(target, cert, address)
        else:
            pre = _raw_socket(target, address) if address else None
        sock.connect(target, header=headers, timeout=CONNECT_TIMEOUT, suppress_origin=True,
                     socket=pre)
    except websocket.WebSocketBadStatusException as exc:
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            raise Fatal("the bridge at %s refused the token (HTTP %s): check --token / "
                        "RADICAL_ORBIT_BRIDGE_TOKEN / bridge.token" % (url, status))
        raise Retry("bridge answered HTTP %s to the WebSocket upgrade" % status)
    except ssl.SSLCertVerificationError as exc:
        raise Fatal("TLS failure talking to %s: %s (is --cert the bridge's certificate, and "
                    "does it name this host?)" % (url, exc.verify_message or exc))
    except ssl.SSLEOFError as exc:
        raise Retry("%s closed the connection during the TLS handshake: %s" % (url, exc))
    except ssl.SSLError as exc:
        raise Fatal("TLS failure talking to %s: %s" % (url, exc))
    except (websocket.WebSocketException, OSError) as exc:
        raise Retry("cannot reach %s: %s" % (url, exc))
    try:
        sock.send(encoded, websocket.ABNF.OPCODE_BINARY)
        raw = sock.recv()
        if not raw:
            sock.abort()
            raise Retry("bridge closed the connection during registration (code %s)"
                        % getattr(sock, "status", None))
        reply = protocol.decode(raw, protocol.HANDSHAKE_REPLIES)
    except protocol.ProtocolError as exc:
        # a bridge being upgraded or misconfigured: say so loudly, and try again later
        sock.abort()
        raise Retry("the bridge answered the registration with a bad message: %s" % exc.detail)
    except (websocket.WebSocketException, OSError) as exc:
        sock.abort()
        raise Retry("registration interrupted: %s" % exc)
    kind = reply["k"]
    if kind == protocol.WELCOME:
        return Link(sock, reply)
    sock.abort()
    if kind == protocol.REFUSE and reply.get("retry"):
        raise Retry("bridge refused the registration: %s" % reply["detail"])
    raise Fatal("bridge refused the registration: %s" % reply["detail"])
