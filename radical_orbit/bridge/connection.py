"""One endpoint's WebSocket on the bridge side: the reader loop and the requests
in flight on it.

The connection's thread (the HTTP handler thread of ``/register``) reads every
message and routes it to the waiting request by bridge-made id; HTTP handler
threads of proxied calls send on the same socket under its write lock.
"""
import collections
import itertools
import logging
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from .. import protocol
from .. import websocket as ws
from ..errors import OrbitError, Timeout, Unavailable
from ..streams import ReceiveStream, SendWindow

log = logging.getLogger("radical_orbit.bridge.connection")

#: Request ids are unique per bridge run, across all endpoints.
_request_ids = itertools.count(1)
#: Notifications taken before an ack is sent even though more are waiting to be read.
ACK_BATCH = 256
#: Notification streams of one endpoint remembered for acks sent later (its own and its
#: plugins' durable ones; a peer that invents more has the oldest forgotten)
MAX_NOTE_STREAMS = protocol.MAX_DURABLE_STREAMS + 1


def next_request_id() -> int:
    return next(_request_ids)


class AnsweredEarly(OrbitError):
    """The endpoint sent its complete answer while the request body was still coming."""


class Pending:
    """A proxied request waiting for its endpoint's answer.

    Most calls are one message each way, so the flow-control objects are made only
    when a body actually streams: ``open_window`` before a request body is pumped,
    the receive stream when a response head says more is coming.
    """

    def __init__(self, conn: "EndpointConnection", rid: int, idle_timeout: float):
        self.conn = conn
        self.id = rid
        self.idle_timeout = idle_timeout
        self.window: Optional[SendWindow] = None
        self.body: Optional[ReceiveStream] = None
        self.response: Optional[Dict[str, Any]] = None
        self.error: Optional[OrbitError] = None
        self._ready = threading.Lock()
        self._ready.acquire()
        self._settled = False
        self._state = threading.Lock()

    def _settle(self) -> bool:
        """True for the first of an answer and a failure: only that one wakes the waiter
        (the reader and a shutdown may race)."""
        with self._state:
            first, self._settled = not self._settled, True
            return first

    def open_window(self) -> SendWindow:
        self.window = SendWindow(self.conn.settings["window"])
        return self.window

    def on_response(self, msg: Dict[str, Any]) -> None:
        if not self._settle():
            return
        if not msg.get("end", True):
            rid, conn = self.id, self.conn
            self.body = ReceiveStream(lambda n: conn.send_quietly(protocol.CREDIT, id=rid, n=n),
                                      self.idle_timeout,
                                      max_buffered=conn.settings["window"] + 2 * conn.settings["chunk"])
            self.body.feed(msg.get("body") or b"", False)
            if self.error is not None:          # a failure raced this answer
                self.body.fail(self.error)
        elif self.window is not None:
            self.window.fail(AnsweredEarly("the endpoint answered before the body ended"))
        self.response = msg
        self._ready.release()

    def fail(self, error: OrbitError) -> None:
        self.error = error
        for stream in (self.window, self.body):
            if stream is not None:
                stream.fail(error)
        if self._settle():
            self._ready.release()

    def wait(self, timeout: float) -> Dict[str, Any]:
        if not self._ready.acquire(timeout=timeout):
            raise Timeout("endpoint %s did not answer within %.0f s" % (self.conn.name, timeout))
        if self.response is None:
            raise self.error
        return self.response


class EndpointConnection:
    def __init__(self, sock: ws.WebSocket, name: str, hello: Dict[str, Any],
                 settings: Dict[str, Any], resume_key: str, address: str):
        self.ws = sock
        self.name = name
        self.settings = settings
        self.resume_key = resume_key
        self.address = address
        self.pid = hello.get("pid")
        self.info = dict(hello.get("endpoint") or {})
        self.plugins: Dict[str, Any] = dict(hello.get("plugins") or {})
        self.connected_at = time.time()
        self._pending: Dict[int, Pending] = {}
        self._lock = threading.Lock()
        self.closed = False
        self._ack: Optional[Tuple[str, int]] = None     # (stream, seq) logged, not yet acked
        self._unacked = 0
        #: the streams this endpoint sent numbered notifications on (see ack_streams)
        self.note_streams: "collections.OrderedDict[str, None]" = collections.OrderedDict()

    # -- sending -------------------------------------------------------------
    def send(self, kind: str, **fields: Any) -> None:
        try:
            self.ws.send_binary(protocol.encode(kind, **fields))
        except ws.ConnectionClosed:
            raise Unavailable("endpoint %s disconnected" % self.name, retry_after=1)

    def send_quietly(self, kind: str, **fields: Any) -> None:
        """For credit and cancel: a closed socket already failed the request."""
        try:
            self.send(kind, **fields)
        except Unavailable:
            pass

    # -- requests ------------------------------------------------------------
    def open_request(self, max_pending: int, idle_timeout: float) -> Pending:
        with self._lock:
            if self.closed:
                raise Unavailable("endpoint %s disconnected" % self.name, retry_after=1)
            if len(self._pending) >= max_pending:
                raise Unavailable("endpoint %s has %d requests pending; try again later"
                                  % (self.name, len(self._pending)), retry_after=1)
            pending = Pending(self, next_request_id(), idle_timeout)
            self._pending[pending.id] = pending
        return pending

    def close_request(self, pending: Pending, cancel: bool = False) -> None:
        with self._lock:
            self._pending.pop(pending.id, None)
        if cancel:
            self.send_quietly(protocol.CANCEL, id=pending.id, detail="abandoned by the bridge")

    # -- the reader loop -------------------------------------------------------
    def serve(self, on_note: Callable[[str, Dict[str, Any]], Optional[Tuple[str, int]]],
              on_plugins: Callable[["EndpointConnection"], None]) -> str:
        """Read until the socket closes or the endpoint stops speaking the protocol;
        returns why. The caller shuts the connection down. Nothing the endpoint sends
        ends this loop otherwise: a malformed message is answered with ``error``.

        ``on_note`` puts a notification into the event log and returns what to
        acknowledge; acks are sent once nothing more is waiting to be read (or every
        ACK_BATCH notifications), so a burst costs a handful of them."""
        reason = "closed by the endpoint"
        while True:
            message = self.ws.recv()
            if message is None:
                if self.ws.close_code == ws.CLOSE_ABNORMAL:
                    reason = "connection lost"
                break
            try:
                self._on_message(protocol.decode(message.data, protocol.TO_BRIDGE), on_note, on_plugins)
            except protocol.ProtocolError as exc:
                if self._refuse_message(exc):
                    reason = "protocol error: %s" % exc.detail
                    break
            except Exception:
                log.exception("endpoint %s: handling a message failed", self.name)
            if self._ack is not None and (self._unacked >= ACK_BATCH or not self.ws.buffered()):
                self._send_ack()
        return reason

    def _refuse_message(self, exc: protocol.ProtocolError) -> bool:
        """Answer a message that broke the protocol; True when the link must close.
        A stream it named fails with 502; a malformed ``error`` gets no answer (no
        error ping-pong)."""
        log.warning("endpoint %s sent a bad message: %s", self.name, exc.detail)
        if exc.fatal:
            self.send_quietly(protocol.ERROR, detail=exc.detail, fatal=True)
            self.ws.close(ws.CLOSE_PROTOCOL_ERROR, "bad message")
            return True
        if exc.id is not None:
            self._fail_stream(exc.id, "endpoint %s sent a %s" % (self.name, exc.detail))
        if exc.kind != protocol.ERROR:
            self.send_quietly(protocol.ERROR, detail=exc.detail, id=exc.id)
        return False

    def _fail_stream(self, rid: int, detail: str) -> None:
        with self._lock:
            pending = self._pending.get(rid)
        if pending is not None:
            pending.fail(OrbitError(detail, 502))

    def _on_message(self, msg: Dict[str, Any], on_note, on_plugins) -> None:
        kind = msg["k"]
        if kind in (protocol.RESPONSE, protocol.DATA, protocol.CREDIT, protocol.CANCEL):
            self._on_stream(kind, msg)
        elif kind == protocol.NOTE:
            ack = on_note(self.name, msg)
            if ack is not None:
                self.note_streams[ack[0]] = None
                self.note_streams.move_to_end(ack[0])
                if len(self.note_streams) > MAX_NOTE_STREAMS:
                    self.note_streams.popitem(last=False)
                if self._ack is not None and self._ack[0] != ack[0]:
                    self._send_ack()
                self._ack = ack
                self._unacked += 1
        elif kind == protocol.PLUGINS:
            self.plugins = msg["plugins"]
            on_plugins(self)
        elif kind == protocol.ERROR:
            log.warning("endpoint %s reports a protocol error: %s", self.name, msg["detail"])
            if msg.get("id") is not None:
                self._fail_stream(msg["id"], "endpoint %s refused the request: %s" % (self.name, msg["detail"]))

    def ack_streams(self, logged: Callable[[str], int]) -> None:
        """Acknowledge each stream as far as ``logged`` says: after an event log that could
        not be written caught up, what it held back is acknowledged without waiting for
        the endpoint's next notification."""
        for stream in list(self.note_streams):
            self.send_quietly(protocol.ACK, stream=stream, seq=logged(stream))

    def _send_ack(self) -> None:
        stream, seq = self._ack
        self._ack, self._unacked = None, 0
        self.send_quietly(protocol.ACK, stream=stream, seq=seq)

    def _on_stream(self, kind: str, msg: Dict[str, Any]) -> None:
        with self._lock:
            pending = self._pending.get(msg["id"])
        if pending is None:
            return
        if kind == protocol.RESPONSE:
            pending.on_response(msg)
        elif kind == protocol.DATA:
            if pending.body is not None:
                pending.body.feed(msg.get("body") or b"", bool(msg.get("end")))
        elif kind == protocol.CREDIT:
            if pending.window is not None:
                pending.window.grant(msg["n"])
        else:
            pending.fail(Unavailable("endpoint %s abandoned the request: %s"
                                     % (self.name, msg.get("detail") or ""), retry_after=1))

    def shutdown(self, reason: str) -> None:
        """Fail every request in flight at once with 503 and close the socket."""
        with self._lock:
            self.closed = True
            pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            p.fail(Unavailable("endpoint %s went away (%s)" % (self.name, reason), retry_after=1))
        self.ws.close(ws.CLOSE_GOING_AWAY if reason else ws.CLOSE_NORMAL)

    def describe(self) -> Dict[str, Any]:
        info = dict(self.info)
        info.setdefault("type", info.get("role", "endpoint"))
        info["connected_at"] = self.connected_at
        info["address"] = self.address
        return {"endpoint": info, "plugins": self.plugins}
