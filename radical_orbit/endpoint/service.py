"""The endpoint service: keeps one registered link to the bridge, runs requests on
worker threads, streams bodies with flow control, and keeps every notification
until the bridge acknowledges it (resending after a reconnect). A plugin's durable
notification streams (radical_orbit.plugin.DurableNotes, kept in endpoint/durable.py)
travel the same way under their own stream ids, and survive a restart on the plugin's disk.

Threads: the service thread reads the link; ``worker-N`` run plugin handlers;
``endpoint-pinger`` pings; plugins may notify from any thread.
"""
import collections
import functools
import io
import logging
import os
import random
import secrets
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .. import __version__, protocol
from ..errors import OrbitError, Unavailable
from ..host import host_facts
from ..plugin import Request, Response, parse_query
from ..plugin_host import PluginHost, error_response
from ..streams import ReceiveStream, SendWindow, pump, with_last
from .durable import DurableOutbox, Reader
from .link import Fatal, Link, Retry, dial
from .workers import WorkerPool

log = logging.getLogger("radical_orbit.endpoint")

DEFAULT_SETTINGS = {
    "workers": 8,
    "queue_size": 64,             # requests waiting for a worker before 503
    "note_buffer": 10000,         # notifications kept until acknowledged (beyond, oldest dropped)
    "note_buffer_bytes": 64 * 2**20,  # ... and the bytes they may take
    "durable_note_memory": 1000,  # a durable stream's unacknowledged notes held in memory (the
    "durable_note_memory_bytes": 16 * 2**20,  # rest are read back from the plugin's disk)
    "backoff_initial": 0.25,
    "backoff_max": 5.0,           # RADICAL_ORBIT_RECONNECT_MAX overrides (see endpoint/cli.py)
    "stream_idle_timeout": 60.0,
}
DROP_LOG_INTERVAL = 10.0          # s between "outbox full" warnings
RESEND_BATCH = 256                # durable notes read back from a plugin's disk at a time
READ_RETRY_S = 1.0                # s before reading a plugin's durable notes again after a failure
RETRY_LOG_INTERVAL = 60.0         # s between warnings while the bridge stays unreachable


class Backoff:
    """Capped exponential backoff with jitter, so a restarted bridge is not hit by
    every endpoint at the same instant."""

    def __init__(self, initial: float, cap: float):
        self.initial, self.cap = initial, cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


class Stream:
    """A request in flight on this endpoint: its body in, its window out (made only
    when the answer needs more than one message)."""

    def __init__(self, link: Link, rid: int, idle: float):
        self.link = link
        self.id = rid
        self.window: Optional[SendWindow] = None
        self.body: Optional[ReceiveStream] = None
        self.cancelled: Optional[str] = None
        self.idle = idle

    def open_window(self) -> SendWindow:
        self.window = SendWindow(self.link.settings["window"])
        if self.cancelled:
            self.window.fail(Unavailable(self.cancelled))
        return self.window

    def cancel(self, detail: str) -> None:
        self.cancelled = detail
        for stream in (self.window, self.body):
            if stream is not None:
                stream.fail(Unavailable(detail))


class EndpointService:
    def __init__(self, name: str, url: str, cert: Optional[str], token: Optional[str],
                 plugins: str = "default", role: str = "standalone", sources: str = "",
                 plugin_config: Optional[Dict[str, Dict[str, Any]]] = None, **settings: Any):
        self.name = name
        self.url = url
        #: where URL and token came from ("URL from --url, token from ..."), for errors
        self.sources = sources
        #: why ``run`` returned 1 (bad token, TLS failure), for the command's one error line
        self.fatal_error: Optional[str] = None
        self.cert = cert
        self.token = token
        #: (host, port) to connect to instead of the URL's: the local end of an ssh tunnel
        self.address: Optional[Tuple[str, int]] = None
        self.role = role
        self.settings = dict(DEFAULT_SETTINGS)
        self.settings.update({k: v for k, v in settings.items() if v is not None})
        self.facts = host_facts(role)
        self.host = PluginHost(name, role, self.facts, self.notify, self._plugins_changed,
                               check_table=self._check_table, open_durable=self.open_durable)
        self.plugin_spec = plugins
        #: each plugin's config from ``--plugin-config``, by plugin name
        self.plugin_config = dict(plugin_config or {})
        self.pool: Optional[WorkerPool] = None
        self._link: Optional[Link] = None
        self._resume: Optional[str] = None
        self._streams: Dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        # the outbox: (seq, message) of every notification the bridge has not acknowledged
        self._notes: Deque[Tuple[int, bytes]] = collections.deque()
        self._notes_bytes = 0
        self._notes_dropped = 0
        self._drop_logged = 0.0
        self._note_stream = secrets.token_hex(8)    # this process's numbering, never reused
        self._note_seq = 0                          # the last number given out
        self._note_acked = 0                        # the last number the bridge acknowledged
        self._note_lock = threading.Lock()
        #: plugins' durable notification streams, by stream id (under the note lock)
        self._durable: Dict[str, DurableOutbox] = {}
        self._stopping = threading.Event()
        self.exit_code = 0
        self._outage = [0.0, 0.0]       # when the current outage began, when it was last warned of

    # -- lifecycle -------------------------------------------------------------
    def load_plugins(self) -> None:
        """Load the ``-p`` set; PluginSpecError for an unknown or ambiguous name."""
        self.host.load_spec(self.plugin_spec, self.plugin_config)

    def run(self) -> int:
        """Connect, serve, reconnect, until shut down; returns the exit code."""
        self.pool = WorkerPool(self.settings["workers"], self.settings["queue_size"])
        pinger = threading.Thread(target=self._pinger, name="endpoint-pinger", daemon=True)
        pinger.start()
        backoff = Backoff(self.settings["backoff_initial"], self.settings["backoff_max"])
        try:
            while not self._stopping.is_set():
                try:
                    link = dial(self.url, self.cert, self.token, self._hello(), self.address)
                except Retry as exc:
                    delay = backoff.next_delay()
                    self._log_retry("%s%s" % (exc, self._sources_hint()), delay, backoff.attempt)
                    self._stopping.wait(delay)
                    continue
                except Fatal as exc:
                    self.fatal_error = "%s%s" % (exc, self._sources_hint())
                    self.exit_code = 1
                    break
                except Exception:
                    delay = backoff.next_delay()
                    log.exception("connecting to the bridge failed; retrying in %.1f s", delay)
                    self._stopping.wait(delay)
                    continue
                backoff.reset()
                try:
                    self._serve(link)
                except Exception:
                    log.exception("the bridge connection failed: reconnecting")
        finally:
            self._stopping.set()
            self.host.stop()
            self.pool.stop(timeout=2.0)
        return self.exit_code

    def _log_retry(self, message: str, delay: float, attempt: int) -> None:
        """A bridge away for hours must not fill the log (a batch job's output, often):
        the first failure is a warning, then one a minute; every attempt at DEBUG."""
        now = time.monotonic()
        if attempt <= 1:
            self._outage = [now, now]       # started, last warned
            log.warning("%s; retrying in %.1f s (said again once a minute while it lasts)", message, delay)
        elif now - self._outage[1] >= RETRY_LOG_INTERVAL:
            self._outage[1] = now
            log.warning("%s; still retrying (attempt %d, %.0f s so far)", message, attempt,
                        now - self._outage[0])
        else:
            log.debug("%s; retrying in %.1f s", message, delay)

    def _sources_hint(self) -> str:
        return " (%s)" % self.sources if self.sources else ""

    def fail(self, message: str) -> None:
        """Stop with exit code 1 and ``message`` as the command's one error line (a
        tunnel that cannot come up, say)."""
        self.fatal_error = message
        self.exit_code = 1
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        link = self._link
        if link is not None:
            link.abort()

    # -- one connected session -------------------------------------------------------
    def _hello(self, plugins: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        with self._note_lock:       # a plugin loading meanwhile may open a durable stream
            durable = {s: box.acked for s, box in self._durable.items()}
        info = {"type": self.role, "role": self.role, "hostname": self.facts["hostname"],
                "python_version": self.facts["python_version"], "version": __version__}
        return {"name": self.name, "resume": self._resume, "pid": os.getpid(),
                "endpoint": info, "plugins": self.host.describe() if plugins is None else plugins,
                "notes": {"stream": self._note_stream, "acked": self._note_acked,
                          "durable": durable}}

    def _check_table(self, plugins: Dict[str, Any]) -> None:
        """A plugin table the bridge would refuse in a hello (too many plugins, too large
        or not JSON) raises ProtocolError: the plugin that would make it is not loaded,
        rather than the endpoint being unable to register at its next reconnect."""
        protocol.decode(protocol.encode(protocol.HELLO, **self._hello(plugins)), (protocol.HELLO,))

    def _serve(self, link: Link) -> None:
        self._resume = link.resume
        link.sock.settimeout(3 * link.settings["ping_interval"])
        self._attach(link)
        log.info("registered with %s as %s", self.url, self.name)
        try:
            while not self._stopping.is_set():
                try:
                    msg = link.recv()
                except protocol.ProtocolError as exc:
                    if self._refuse_message(link, exc):
                        break
                    continue
                if msg is None:
                    if not self._stopping.is_set():
                        log.warning("lost the bridge connection: reconnecting")
                    break
                try:
                    self._on_message(link, msg)
                except Exception as exc:
                    log.exception("handling a %s message from the bridge failed", msg["k"])
                    if msg["k"] == protocol.REQUEST:
                        self._cancel_stream(msg["id"], "internal error")
                        link.send(protocol.ERROR, id=msg["id"],
                                  detail="the endpoint failed to take the request: %s: %s"
                                  % (type(exc).__name__, exc))
        finally:
            self._detach(link)
            link.close()

    def _attach(self, link: Link) -> None:
        """Resend, in order, every notification the bridge has not acknowledged, then
        send notifications live."""
        with self._note_lock:
            if link.acks:
                self._forget_notes(link.notes_acked)
            for _seq, message in self._notes:
                if not link.send_encoded(message):
                    return
            if not link.acks:
                self._notes.clear()
                self._notes_bytes = 0
            boxes = list(self._durable.values())
            for box in boxes:
                box.attach()
            self._link = link
        if boxes:
            threading.Thread(target=self._resend_durable, args=(link, boxes), name="durable-resend",
                             daemon=True).start()

    def _detach(self, link: Link) -> None:
        with self._note_lock:
            if self._link is link:
                self._link = None
                for box in self._durable.values():
                    box.live = False
        with self._streams_lock:
            streams = [s for s in self._streams.values() if s.link is link]
            for s in streams:
                del self._streams[s.id]
        for s in streams:
            s.cancel("bridge connection lost")

    def _refuse_message(self, link: Link, exc: protocol.ProtocolError) -> bool:
        """Answer a message that broke the protocol; True when the link must close (the
        bridge does not speak it: reconnect). A stream it named is abandoned; a
        malformed ``error`` gets no answer (no error ping-pong)."""
        log.error("bridge sent a bad message: %s", exc.detail)
        if exc.fatal:
            link.send(protocol.ERROR, detail=exc.detail, fatal=True)
            return True
        if exc.id is not None:
            self._cancel_stream(exc.id, "the bridge sent a %s" % exc.detail)
        if exc.kind != protocol.ERROR:
            link.send(protocol.ERROR, detail=exc.detail, id=exc.id)
        return False

    def _cancel_stream(self, rid: int, detail: str) -> None:
        with self._streams_lock:
            stream = self._streams.pop(rid, None)
        if stream is not None:
            stream.cancel(detail)

    def _on_message(self, link: Link, msg: Dict[str, Any]) -> None:
        kind = msg["k"]
        if kind == protocol.REQUEST:
            self._on_request(link, msg)
            return
        if kind == protocol.SHUTDOWN:
            log.info("shutdown requested by the bridge: %s", msg.get("reason") or "")
            self._stopping.set()
            return
        if kind == protocol.ERROR:
            log.error("bridge reports a protocol error: %s", msg["detail"])
            if msg.get("id") is not None:
                self._cancel_stream(msg["id"], "the bridge refused the stream: %s" % msg["detail"])
            return
        if kind == protocol.ACK:
            if msg["stream"] == self._note_stream:
                with self._note_lock:
                    self._forget_notes(msg["seq"])
            else:
                with self._note_lock:
                    box = self._durable.get(msg["stream"])
                if box is not None:
                    self._durable_acked(box, msg["seq"])
            return
        with self._streams_lock:
            stream = self._streams.get(msg["id"])
        if stream is None:
            return
        if kind == protocol.DATA and stream.body is not None:
            stream.body.feed(msg.get("body") or b"", bool(msg.get("end")))
        elif kind == protocol.CREDIT:
            if stream.window is not None:
                stream.window.grant(msg["n"])
        elif kind == protocol.CANCEL:
            stream.cancel("cancelled by the bridge: %s" % (msg.get("detail") or ""))

    # -- requests --------------------------------------------------------------------
    def _on_request(self, link: Link, msg: Dict[str, Any]) -> None:
        rid = msg["id"]
        stream = Stream(link, rid, self.settings["stream_idle_timeout"])
        if msg.get("end", True):
            body = io.BytesIO(msg.get("body") or b"")
        else:
            stream.body = ReceiveStream(lambda n: link.send(protocol.CREDIT, id=rid, n=n),
                                        stream.idle, max_buffered=link.settings["window"] + 2 * link.settings["chunk"])
            stream.body.feed(msg.get("body") or b"", False)
            body = stream.body
        headers = msg.get("headers") or {}
        req = Request(msg["method"], msg["path"],
                      parse_query(msg.get("query") or ""), headers, body,
                      headers.get("x-request-id") or "r%d" % rid, msg.get("length"))
        log.debug("[%s] %s /%s", req.request_id, req.method, req.path)
        call, inline = self.host.prepare(req)
        if inline and stream.body is None:
            resp = call()
            if isinstance(resp.body, bytes) and len(resp.body) <= link.settings["chunk"]:
                self._respond(stream, resp)
                return
            call = lambda: resp  # noqa: E731 -- a streamed answer needs credit: a worker sends it
        with self._streams_lock:
            self._streams[rid] = stream
        if not self.pool.submit(lambda: self._handle(stream, call)):
            self._forget(stream)
            busy = Unavailable("endpoint %s is busy: all %d workers taken and the queue is full"
                               % (self.name, self.settings["workers"]), retry_after=1)
            self._respond(stream, error_response(busy))

    def _handle(self, stream: Stream, call: Callable[[], Response]) -> None:
        try:
            if stream.cancelled:
                return
            self._respond(stream, call())
        finally:
            self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        with self._streams_lock:
            self._streams.pop(stream.id, None)

    def _respond(self, stream: Stream, resp: Response) -> None:
        """Send the response head with the first chunk, then the rest under credit."""
        link, rid = stream.link, stream.id
        headers = {str(k): str(v) for k, v in resp.headers.items()}
        headers["content-type"] = str(resp.content_type)
        chunks = with_last(resp.chunks(link.settings["chunk"]))
        try:
            pump(chunks,
                 lambda body, end: link.send(protocol.RESPONSE, id=rid, status=resp.status, headers=headers,
                                             body=body, end=end, length=resp.length),
                 lambda body, end: link.send(protocol.DATA, id=rid, body=body, end=end),
                 stream.open_window, stream.idle)
        except OrbitError as exc:
            log.info("[%s] response stream abandoned: %s", rid, exc.detail)
            link.send(protocol.CANCEL, id=rid, detail=exc.detail)
        except Exception as exc:
            log.exception("[%s] response body failed", rid)
            link.send(protocol.CANCEL, id=rid, detail="response body failed: %s" % exc)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()

    # -- notifications and plugin changes ---------------------------------------------
    def notify(self, plugin: str, topic: str, data: Any) -> None:
        """From any thread: number it, keep it until the bridge acknowledges it (bounded
        in count and bytes, oldest dropped first: the bridge sees the gap in the numbers
        and reports it) and send it now if connected. A notification too large for one
        message is dropped with a log line: it would cost the whole link."""
        with self._note_lock:
            seq = self._note_seq + 1
            message = protocol.encode(protocol.NOTE, plugin=plugin, topic=topic, data=data,
                                      ts=time.time(), stream=self._note_stream, seq=seq)
            if len(message) > protocol.MAX_MESSAGE:
                log.warning("notification %s/%s dropped: %d bytes exceed the %d-byte message limit",
                            plugin, topic, len(message), protocol.MAX_MESSAGE)
                return
            self._note_seq = seq
            link = self._link
            sent = link is not None and link.send_encoded(message)
            if not sent or link.acks:
                self._keep(seq, message)
            if link is None:
                log.debug("notification %s/%s kept while disconnected (%d waiting)",
                          plugin, topic, len(self._notes))

    def _keep(self, seq: int, message: bytes) -> None:
        """Into the outbox (under the note lock), within its bounds."""
        self._notes.append((seq, message))
        self._notes_bytes += len(message)
        dropped = 0
        while (len(self._notes) > self.settings["note_buffer"]
               or self._notes_bytes > self.settings["note_buffer_bytes"]):
            self._notes_bytes -= len(self._notes.popleft()[1])
            dropped += 1
        if dropped:
            self._notes_dropped += dropped
            now = time.monotonic()
            if now - self._drop_logged > DROP_LOG_INTERVAL:
                self._drop_logged = now
                log.warning("notification outbox full (%d, %d bytes): dropped the oldest "
                            "unacknowledged one(s), %d so far", self.settings["note_buffer"],
                            self.settings["note_buffer_bytes"], self._notes_dropped)

    def _forget_notes(self, acked: int) -> None:
        """The bridge has everything up to ``acked`` in its event log (under the note lock)."""
        acked = min(acked, self._note_seq)
        if acked > self._note_acked:
            self._note_acked = acked
        while self._notes and self._notes[0][0] <= acked:
            self._notes_bytes -= len(self._notes.popleft()[1])

    def open_durable(self, plugin: str, stream: str, acked: int, on_acked: Callable[[int], None],
                     read: Optional[Reader] = None) -> DurableOutbox:
        """A plugin's durable notification stream (radical_orbit.plugin.DurableNotes)."""
        if not isinstance(stream, str) or not 0 < len(stream) <= protocol.MAX_STREAM_ID:
            raise ValueError("a durable stream id is a str of 1 to %d characters" % protocol.MAX_STREAM_ID)
        box = DurableOutbox(plugin, stream, acked, on_acked, self._send_durable, self._close_durable, read,
                            self.settings["durable_note_memory"], self.settings["durable_note_memory_bytes"])
        with self._note_lock:
            if stream in self._durable or len(self._durable) >= protocol.MAX_DURABLE_STREAMS:
                raise ValueError("durable stream %s is open already, or %d are" % (stream, len(self._durable)))
            self._durable[stream] = box
            box.live = self._link is not None       # nothing to catch up with yet
        return box

    def _close_durable(self, box: DurableOutbox) -> None:
        with self._note_lock:
            if self._durable.get(box.stream) is box:
                del self._durable[box.stream]

    def _durable_message(self, box: DurableOutbox, seq: int, topic: str, data: Any) -> Optional[bytes]:
        """The note message; None (logged) for one too large for a message: the bridge will
        report the gap, the plugin still has it."""
        message = protocol.encode(protocol.NOTE, plugin=box.plugin, topic=topic, data=data,
                                  ts=time.time(), stream=box.stream, seq=seq)
        if len(message) > protocol.MAX_MESSAGE:
            log.warning("durable notification %s/%s #%d dropped: %d bytes exceed the %d-byte message "
                        "limit", box.plugin, topic, seq, len(message), protocol.MAX_MESSAGE)
            return None
        return message

    def _send_durable(self, box: DurableOutbox, seq: int, topic: str, data: Any) -> None:
        """Keep it until acknowledged (in memory within the box's bounds, else on the
        plugin's disk only) and send it now if the link has everything before it."""
        message = self._durable_message(box, seq, topic, data)
        with self._note_lock:
            if self._durable.get(box.stream) is not box or seq <= box.acked:
                return
            link = self._link
            sent = box.take(seq, message) and link is not None and link.send_encoded(message)
            if sent:
                box.sent = seq
            delivered = sent and not link.acks
        if delivered:
            self._durable_acked(box, seq)

    def _resend_durable(self, link: Link, boxes: List[DurableOutbox]) -> None:
        """Thread ``durable-resend`` of a new link: every durable stream's unacknowledged
        notes again, in order, before its new ones go out live. Off the link's reader, so
        acks free memory while a long backlog is read back from a plugin's disk."""
        for box in boxes:
            try:
                self._catch_up(link, box)
            except Exception:
                log.exception("resending durable notifications of %s failed", box.stream)

    def _catch_up(self, link: Link, box: DurableOutbox) -> None:
        encode = functools.partial(self._durable_message, box)
        failed = False
        while True:
            with self._note_lock:
                if self._link is not link or self._durable.get(box.stream) is not box:
                    return
                for seq, message in box.next_held():
                    if not link.send_encoded(message):
                        return
                    box.sent = seq
                if box.sent >= box.last or not box.reads_back:
                    box.live = True
                    delivered = None if link.acks or box.sent <= box.acked else box.sent
                    break
                after = box.sent
            try:
                rows = box.read_back(after, RESEND_BATCH, encode)
            except Exception:
                if not failed:
                    log.exception("plugin %s failed to read back durable notifications of %s: "
                                  "trying again every %.0f s", box.plugin, box.stream, READ_RETRY_S)
                failed = True
                if self._stopping.wait(READ_RETRY_S):
                    return
                continue
            with self._note_lock:
                if self._link is not link or self._durable.get(box.stream) is not box:
                    return
                for seq, message in rows:
                    if seq <= box.sent:
                        continue
                    if seq > box.last:
                        break
                    if message is not None and not link.send_encoded(message):
                        return
                    box.sent = seq
                if box.sent == after:
                    # neither sent nor acknowledged meanwhile: the plugin's disk has nothing
                    # before what memory holds next (or the last one): gone, and the bridge
                    # will report the gap
                    skipped_to = next((seq - 1 for seq in box.held if seq > box.sent), box.last)
                    log.warning("plugin %s has no record of durable notifications %d-%d of %s",
                                box.plugin, box.sent + 1, skipped_to, box.stream)
                    box.sent = skipped_to
        if delivered is not None:           # a bridge that does not acknowledge: sent is delivered
            self._durable_acked(box, delivered)

    def _durable_acked(self, box: DurableOutbox, seq: int) -> None:
        with self._note_lock:
            news = box.forget(seq)
        if news:
            try:
                box.acknowledged(seq)
            except Exception:
                log.exception("plugin %s failed to record the acknowledgement of %s #%d",
                              box.plugin, box.stream, seq)

    def _plugins_changed(self) -> None:
        link = self._link
        if link is not None:
            link.send(protocol.PLUGINS, plugins=self.host.describe())

    def _pinger(self) -> None:
        """Pings the bridge and expires plugin sessions; a failing round is logged and
        the next one runs (a dead pinger would get the endpoint dropped)."""
        while not self._stopping.wait(self._ping_interval()):
            try:
                link = self._link
                if link is not None:
                    link.ping()
                self.host.expire_sessions()
            except Exception:
                log.exception("ping round failed")

    def _ping_interval(self) -> float:
        link = self._link
        return link.settings["ping_interval"] if link else protocol.DEFAULT_SETTINGS["ping_interval"]
