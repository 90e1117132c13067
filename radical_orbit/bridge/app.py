"""The Bridge: owns the HTTP server, the endpoint table, the SSE hub, the bridge's
own plugins and the housekeeping thread; starts and stops them together."""
import logging
import secrets
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import config, protocol
from .. import websocket as ws
from ..host import host_facts
from ..names import check_endpoint_name
from ..errors import OrbitError
from ..plugin import DurableNotes
from ..plugin_host import PluginHost
from ..registry import PluginSpecError
from . import admission, framing, http
from .auth import Auth
from .calls import BridgeCalls
from .connection import EndpointConnection
from .eventlog import EventLog, LogBusy
from .events import EventHub
from .http import Limits, Server, tls_context
from .static import ExplorerFiles
from .topology import Topology
from .urls import advertised_urls, host_name

log = logging.getLogger("radical_orbit.bridge")

DEFAULT_SETTINGS = {
    "request_timeout": 300.0,       # s until a proxied request's response head: else 504
    "stream_idle_timeout": 60.0,    # s a body stream may stall before it is abandoned
    "max_pending": 256,             # requests in flight per endpoint: beyond, 503 + Retry-After
    "max_json_body": 2**20,         # bytes accepted by the bridge's own routes
    "max_proxy_body": 2**40,        # bytes accepted on a proxied request
    "ping_interval": protocol.DEFAULT_SETTINGS["ping_interval"],
    "max_connections": admission.MAX_CONNECTIONS,   # open connections of any kind (a thread each)
    "max_unauthenticated": admission.MAX_UNAUTHENTICATED,   # ... not authenticated yet
    "max_unauthenticated_per_source": admission.MAX_UNAUTHENTICATED_PER_SOURCE,
    "shed_min_age": admission.SHED_MIN_AGE,         # s a slow connection is kept from newcomers
    "refusal_summary_interval": admission.SUMMARY_INTERVAL,   # s between refusal log lines
    "head_timeout": http.HEAD_TIMEOUT,              # s to receive a request head
    "keepalive_timeout": http.KEEPALIVE_TIMEOUT,    # s an authenticated connection may idle
    "max_head_bytes": framing.MAX_HEAD_BYTES,       # request line + header fields
    "max_headers": framing.MAX_HEADERS,
    "sse_keepalive": 15.0,          # s between keepalive comments on an idle event stream
    "hello_timeout": 10.0,          # s a WebSocket at /register has to send its hello
    "event_log_dir": None,          # default: <config dir>/events
    "event_log_events": 10000,      # events kept for replay (on disk and in memory) ...
    "event_log_bytes": 64 * 2**20,  # ... and the bytes they may take
}
EVENT_LOG_DIR = "events"
#: SSE keepalive intervals allowed: the SDK takes a stream silent for 45 s as lost
MAX_SSE_KEEPALIVE = 30.0


class Bridge:
    def __init__(self, host: str = "127.0.0.1", port: int = 8000, cert: Optional[str] = None,
                 key: Optional[str] = None, token: Optional[str] = None,
                 plugins: Optional[str] = None,
                 plugin_config: Optional[Dict[str, Dict[str, Any]]] = None, **settings: Any):
        self.settings = dict(DEFAULT_SETTINGS)
        self.settings.update({k: v for k, v in settings.items() if v is not None})
        self.host, self.port = host, port
        self.cert = cert
        self.tls = tls_context(cert, key) if cert else None
        self.auth = Auth(token, (host, socket.gethostname(), host_name()) if token is None else ())
        self.started = time.time()
        self.hub = EventHub(ring_size=self.settings["event_log_events"],
                            ring_bytes=self.settings["event_log_bytes"])
        self.explorer = ExplorerFiles()
        self.server: Optional[Server] = None
        self.urls: Dict[str, str] = {}
        self.url_warnings: List[str] = []
        self.event_log_note: Optional[Tuple[int, str]] = None
        self.topology: Optional[Topology] = None
        self.local: Optional[PluginHost] = None
        #: bridge plugins' durable streams, told when a failing event log caught up
        self._logged_notes: List["LoggedNotes"] = []
        self.plugin_spec = plugins
        #: each bridge plugin's config from ``--plugin-config``, by plugin name
        self.plugin_config = dict(plugin_config or {})
        self._register_lock = threading.Lock()
        self._stopping = threading.Event()
        self._listening = False
        self._housekeeper: Optional[threading.Thread] = None

    # -- lifecycle -----------------------------------------------------------
    def bind(self) -> None:
        """Take the port without accepting connections yet: what clients read (the URL
        file) is written between ``bind`` and ``listen``."""
        from .routes import BridgeHandler
        handler = type("Handler", (BridgeHandler,), {"bridge": self})
        s = self.settings
        limits = Limits(s["head_timeout"], s["keepalive_timeout"], s["max_head_bytes"],
                        s["max_headers"]).check()
        most = admission.connections_the_fd_limit_allows(s["max_connections"])
        if most < s["max_connections"]:
            log.warning("the file-descriptor limit (ulimit -n) leaves room for %d connections: "
                        "--max-connections lowered from %d", most, s["max_connections"])
        budget = admission.Admission(most, s["max_unauthenticated"], s["max_unauthenticated_per_source"],
                                     s["shed_min_age"], s["refusal_summary_interval"])
        self.server = Server((self.host, self.port), handler, self.tls, limits, budget,
                             bind_and_activate=False)
        try:
            self.server.server_bind()
        except BaseException:
            self.server.server_close()
            raise
        self.port = self.server.server_address[1]
        self.urls, self.url_warnings = advertised_urls(self.host, self.port, self.cert)
        self.topology = Topology(self.hub, self.urls["url"])
        self.open_event_log()

    def open_event_log(self) -> None:
        """Continue from the event log in the config dir (ConfigError when another bridge
        holds it). A log that cannot be written leaves the bridge running from memory."""
        directory = self.settings["event_log_dir"] or config.path_in_home(EVENT_LOG_DIR)
        event_log = EventLog(directory, self.settings["event_log_events"], self.settings["event_log_bytes"])
        try:
            kept = self.hub.attach_log(event_log)
        except LogBusy as exc:
            raise config.ConfigError(str(exc))
        except OSError as exc:
            event_log.close()
            self.event_log_note = (logging.WARNING, "no event log (%s): events will not survive a "
                                   "restart of this bridge" % exc)
            return
        self.event_log_note = (logging.INFO, "event log %s: %d event(s) kept for replay" % (directory, kept))

    def listen(self) -> None:
        """From here on the port accepts connections (served once ``serve_forever`` runs)."""
        if not self._listening:
            self.server.server_activate()
            self._listening = True

    def load_plugins(self) -> None:
        """The bridge's own plugins (pseudo-endpoint ``bridge``); PluginSpecError on a bad -p."""
        if self.plugin_spec == "none":
            if self.plugin_config:
                raise PluginSpecError("--plugin-config for %s, but -p none loads no bridge plugins"
                                      % ", ".join(sorted(self.plugin_config)))
            return
        self.local = PluginHost("bridge", "bridge", host_facts("bridge"),
                                notify=lambda plugin, topic, data: self.hub.notify("bridge", plugin, topic, data),
                                on_change=self.topology.changed, bridge=BridgeCalls(self),
                                open_durable=self._open_durable)
        self.local.load_spec(self.plugin_spec or "default", self.plugin_config)
        self.topology.set_local(self.local)

    def _open_durable(self, plugin: str, stream: str, acked: int, on_acked: Callable[[int], None],
                      read: Any = None) -> DurableNotes:
        """A bridge plugin's durable notification stream: straight into the event log,
        acknowledged when there (a number the log already has is dropped); nothing waits
        in memory, so ``read`` is not needed."""
        self.hub.stream_acked(stream, acked)
        notes = LoggedNotes(self.hub, plugin, stream, on_acked, self._logged_notes.remove)
        self._logged_notes.append(notes)
        return notes

    def serve_forever(self) -> None:
        self.listen()
        if self.event_log_note:     # said here: a start that fails says one line only
            log.log(*self.event_log_note)
        self.topology.start()
        self._housekeeper = threading.Thread(target=self._housekeeping, name="bridge-housekeeping",
                                             daemon=True)
        self._housekeeper.start()
        try:
            self.server.serve_forever(poll_interval=0.25)
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Stop serving; safe from any thread (signal handlers use a helper thread)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        threading.Thread(target=self.server.shutdown, name="bridge-stop", daemon=True).start()

    def _shutdown(self) -> None:
        self._stopping.set()
        self.topology.stop()
        self.hub.close_all()
        closing = [_in_background(conn.shutdown, "bridge stopping") for conn in self.topology.connections()]
        deadline = time.monotonic() + 5.0
        for thread in closing:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.local is not None:
            self.local.stop()
        self.server.server_close()
        self.hub.close()
        log.info("bridge stopped")

    def _housekeeping(self) -> None:
        """Pings every endpoint, drops silent ones, expires bridge plugin sessions; a
        failure in one round is logged and the next round runs."""
        interval = self.settings["ping_interval"]
        while not self._stopping.wait(interval):
            try:
                self._housekeeping_round(3 * interval)
            except Exception:
                log.exception("housekeeping round failed")

    def _housekeeping_round(self, limit: float) -> None:
        now = time.monotonic()
        for conn in self.topology.connections():
            if now - conn.ws.last_seen > limit:
                log.warning("endpoint %s silent for %.0f s: dropping it", conn.name, now - conn.ws.last_seen)
                _in_background(conn.shutdown, "no answer to pings")
                continue
            try:
                conn.ws.ping()
            except ws.ConnectionClosed:
                pass
        if self.local is not None:
            self.local.expire_sessions()
        if self.hub.retry_log():
            for conn in self.topology.connections():
                conn.ack_streams(self.hub.logged)
            for notes in list(self._logged_notes):
                notes.acknowledge()

    # -- endpoint registration -------------------------------------------------
    def register(self, handler) -> None:
        """Serve one endpoint's WebSocket in this handler thread until it closes."""
        sock = ws.accept(handler, max_message_size=protocol.MAX_MESSAGE,
                         idle_timeout=3 * self.settings["ping_interval"])
        if sock is None:
            return
        address = handler.client_address[0]
        conn = self._handshake(sock, address)
        if conn is None:
            return
        log.info("endpoint %s registered from %s (pid %s, %d plugins)", conn.name, address,
                 conn.pid, len(conn.plugins))
        reason = "bridge error"
        try:
            reason = conn.serve(self._on_note, lambda c: self.topology.changed())
        finally:
            conn.shutdown(reason)
            if self.topology.remove(conn):
                log.info("endpoint %s disconnected: %s", conn.name, reason)

    def _handshake(self, sock: ws.WebSocket, address: str) -> Optional[EndpointConnection]:
        """The hello, within ``hello_timeout`` (pings do not count), or the socket closes."""
        timeout = self.settings["hello_timeout"]
        message = sock.recv(deadline=time.monotonic() + timeout)
        if message is None:
            if sock.close_code == ws.CLOSE_POLICY_VIOLATION:
                log.warning("registration from %s closed: no hello within %.0f s", address, timeout)
            return None
        try:
            hello = protocol.decode(message.data, (protocol.HELLO,))
            name = check_endpoint_name(hello["name"])
            settings = dict(protocol.DEFAULT_SETTINGS, ping_interval=self.settings["ping_interval"])
            conn = EndpointConnection(sock, name, hello, settings, secrets.token_hex(16), address)
            notes = {"acked": self._notes_acked(hello.get("notes"))}
        except OrbitError as exc:
            return self._refuse(sock, 400, exc.detail, retry=False)
        except protocol.ProtocolError as exc:
            # every flaw of a hello is fatal: there is no registered link to keep
            log.warning("registration from %s refused: %s", address, exc.detail)
            _send(sock, protocol.ERROR, detail=exc.detail, fatal=True)
            sock.close(ws.CLOSE_PROTOCOL_ERROR, "bad hello")
            return None
        taken = None
        with self._register_lock:
            old = self.topology.holder(name)
            if old is not None and not old.closed:
                if old.name != name:
                    taken = ("endpoint name %r is taken: a live endpoint is named %r (names are "
                             "compared case-insensitively)" % (name, old.name))
                elif not hello.get("resume") or not secrets.compare_digest(
                        hello["resume"].encode(), old.resume_key.encode()):
                    taken = "endpoint name %r is taken by a live endpoint" % name
                else:
                    log.info("endpoint %s reconnected: replacing its stale socket", name)
            if taken is None:
                # welcome first: once listed, calls may be sent on this socket at once
                _send(sock, protocol.WELCOME, resume=conn.resume_key, settings=settings, notes=notes)
                self.topology.add(conn)
        if taken is not None:
            # outside the lock: the close waits (boundedly) for the claimant's close frame,
            # and every other registration would wait behind it
            return self._refuse(sock, 409, taken, retry=True)
        if old is not None:
            _in_background(old.shutdown, "replaced by a reconnect")
        return conn

    def _refuse(self, sock: ws.WebSocket, status: int, detail: str, retry: bool) -> None:
        log.warning("registration refused: %s", detail)
        _send(sock, protocol.REFUSE, status=status, detail=detail, retry=retry)
        sock.close(ws.CLOSE_POLICY_VIOLATION, detail[:120])
        return None

    def _notes_acked(self, notes: Optional[Dict[str, Any]]) -> int:
        """How far this bridge has the stream of a hello's ``notes`` ({stream, acked},
        checked by the schema; absent from endpoints that do not number notifications)."""
        if notes is None:
            return 0
        for stream, acked in (notes.get("durable") or {}).items():
            self.hub.stream_acked(stream, acked)       # plugins' durable streams: no false gap
        return self.hub.stream_acked(notes["stream"], notes.get("acked", 0))

    def _on_note(self, endpoint: str, msg: Dict[str, Any]) -> Optional[Tuple[str, int]]:
        """Log and publish one notification; returns the ack it earns, if numbered."""
        plugin, topic, data = msg["plugin"], msg["topic"], msg.get("data")
        stream, seq = msg.get("stream"), msg.get("seq")
        if stream is None and seq is None:
            self.hub.notify(endpoint, plugin, topic, data)
            return None
        if stream is None or seq is None:
            raise protocol.ProtocolError("malformed note message: 'stream' and 'seq' go together",
                                         False, None, protocol.NOTE)
        return stream, self.hub.notify_once(endpoint, plugin, topic, data, stream, seq)


class LoggedNotes(DurableNotes):
    """A bridge plugin's durable stream: each notification is logged (once per number)
    and acknowledged as it is sent."""

    def __init__(self, hub: EventHub, plugin: str, stream: str, on_acked: Callable[[int], None],
                 on_close: Callable[["LoggedNotes"], None]):
        super().__init__(lambda topic, data: None, on_acked)
        self._hub, self._plugin, self._stream = hub, plugin, stream
        self._on_close = on_close

    def close(self) -> None:
        try:
            self._on_close(self)
        except ValueError:
            pass                            # closed twice

    def send(self, seq: int, topic: str, data: Any) -> None:
        self._on_acked(self._hub.notify_once("bridge", self._plugin, topic, data, self._stream, seq))

    def acknowledge(self) -> None:
        """After the event log caught up: what it held back of this stream is there now."""
        try:
            self._on_acked(self._hub.logged(self._stream))
        except Exception:
            log.exception("plugin %s failed to record the acknowledgement of %s", self._plugin, self._stream)


def _in_background(func, *args) -> threading.Thread:
    """Closing a WebSocket waits (boundedly) for the peer's close frame: never in a loop."""
    thread = threading.Thread(target=func, args=args, name="ws-close", daemon=True)
    thread.start()
    return thread


def _send(sock: ws.WebSocket, kind: str, **fields: Any) -> None:
    try:
        sock.send_binary(protocol.encode(kind, **fields))
    except ws.ConnectionClosed:
        pass
