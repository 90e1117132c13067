"""The SSE hub: numbered events, a bounded replay ring, bounded per-listener queues.

Every event is written to the event log (``eventlog.py``) before a listener sees it,
and a restarted bridge continues the ids from the log's last one with the log's tail
as its ring: a ``Last-Event-ID`` from before the restart replays exactly what was
missed. A brand-new log (or none) starts numbering from the clock in microseconds, so
ids still grow when the log was removed: an id older than the log then gets all of
this run while the ring holds it; any other id the ring cannot account for gets one
topology snapshot.
"""
import collections
import json
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional

from .eventlog import EventLog, remember

log = logging.getLogger("radical_orbit.bridge.events")

TOPOLOGY = "topology"
NOTIFICATION = "notification"


#: (plugin, topic) of the event that tells listeners an endpoint dropped notifications
DROPPED = ("_orbit", "notifications_dropped")


def _note(endpoint: str, plugin: str, topic: str, data: Any) -> Dict[str, Any]:
    return {"endpoint": endpoint, "plugin": plugin, "topic": topic, "data": data}


def serialise(topic: str, data: Any) -> str:
    """An event's ``data:`` line, made once, outside the hub's lock."""
    return json.dumps({"topic": topic, "data": data}, separators=(",", ":"), default=str)


class Event:
    """One numbered event in its SSE wire form. ``payload`` (the ``data:`` JSON) is kept
    apart only for topology events, whose newest one serves as the current snapshot."""
    __slots__ = ("seq", "topic", "endpoint", "plugin", "ntopic", "payload", "wire")

    def __init__(self, seq: int, topic: str, payload: "str | bytes", endpoint: Optional[str] = None,
                 plugin: Optional[str] = None, ntopic: Optional[str] = None):
        self.seq = seq
        self.topic = topic
        self.endpoint = endpoint
        self.plugin = plugin
        self.ntopic = ntopic
        data = payload.encode() if isinstance(payload, str) else payload
        self.payload = data if topic == TOPOLOGY else None
        self.wire = b"id: %d\ndata: %s\n\n" % (seq, data)

    def data(self) -> memoryview:
        """The ``data:`` JSON inside ``wire``, without a copy."""
        return memoryview(self.wire)[self.wire.index(b"data: ") + 6:-2]


class Filter:
    """``?endpoint=&plugin=&topic=``; ``topic`` matches the SSE topic or a notification's topic.
    Topology events pass the endpoint and plugin filters: they describe the world the
    filtered events live in."""

    def __init__(self, endpoint: Optional[str] = None, plugin: Optional[str] = None,
                 topic: Optional[str] = None):
        self.endpoint, self.plugin, self.topic = endpoint or None, plugin or None, topic or None

    def accepts(self, event: Event) -> bool:
        if event.topic == TOPOLOGY:
            return self.topic in (None, TOPOLOGY)
        if self.topic not in (None, event.topic, event.ntopic):
            return False
        if self.endpoint not in (None, event.endpoint):
            return False
        return self.plugin in (None, event.plugin)


class Listener:
    """One SSE client's queue. Overflow disconnects it; it resumes by id.

    The bounds hold what is queued before one more event is taken; an empty queue takes
    any event (the bytes are the hub's, shared by every queue and the ring).
    A topology event is a whole snapshot, so a newer one replaces a queued older one,
    and it counts against neither bound: at most one is ever queued, and however
    large the topology, it alone never cuts a listener."""

    def __init__(self, flt: Filter, max_queue: int, max_bytes: int):
        self.filter = flt
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        self.queue: Deque[Event] = collections.deque()
        self.cond = threading.Condition()
        self.overflowed = False
        self.closed = False

    def offer(self, event: Event) -> None:
        if not self.filter.accepts(event):
            return
        with self.cond:
            if event.topic == TOPOLOGY:
                self._supersede_topology()
                self.queue.append(event)
            elif self.queue and (len(self.queue) >= self.max_queue
                                 or self.queued_bytes + len(event.wire) > self.max_bytes):
                # an empty queue takes any one event: a notification whose JSON alone is
                # over the bound (4 MiB of control characters is 24 MiB escaped) would
                # otherwise cut every listener, and again after each resume
                self.overflowed = True
            else:
                self.queue.append(event)
                self.queued_bytes += len(event.wire)
            self.cond.notify()

    def _supersede_topology(self) -> None:
        """Drop the queued topology snapshot, if any (under ``cond``)."""
        for queued in self.queue:
            if queued.topic == TOPOLOGY:
                self.queue.remove(queued)
                return

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def take(self, timeout: float) -> List[Event]:
        """Everything queued (maybe nothing, after ``timeout``)."""
        with self.cond:
            if not self.queue and not (self.overflowed or self.closed):
                self.cond.wait(timeout)
            out = list(self.queue)
            self.queue.clear()
            self.queued_bytes = 0
            return out


class EventHub:
    """Bounded in events and in bytes: the replay ring and every listener's queue.

    With an ``EventLog`` attached, every event is written to it before it is numbered
    for anyone else, the ring starts as the log's tail and ids continue from it, and
    endpoints' numbered notifications are taken at most once per (stream, seq)."""

    def __init__(self, ring_size: int = 10000, listener_queue: int = 2048,
                 ring_bytes: int = 64 * 2**20, listener_bytes: int = 16 * 2**20):
        self._ring: Deque[Event] = collections.deque()
        self._ring_size = ring_size
        self._ring_bytes = ring_bytes
        self._ring_used = 0
        self._listeners: List[Listener] = []
        self._lock = threading.Lock()
        self._seq = self._run_start = int(time.time() * 1e6)
        self._log: Optional[EventLog] = None
        self._marks: Optional[EventLog] = None      # the log whose marks say what is acknowledged
        self._streams: "collections.OrderedDict[str, int]" = collections.OrderedDict()
        self._topology_seq = 0                      # id of the newest topology event (or marker)
        self._topology: Optional[Event] = None      # the newest topology event of this run
        self._closed = False
        self.listener_queue = listener_queue
        self.listener_bytes = listener_bytes

    def attach_log(self, event_log: EventLog) -> int:
        """Open ``event_log`` (LogBusy, OSError) and continue from it; returns how many
        events it gave back. Call before anything is published."""
        loaded = event_log.open(self._seq)
        with self._lock:
            self._log = self._marks = event_log
            self._streams = collections.OrderedDict(event_log.streams)
            self._seq = self._run_start = loaded.last_id
            for record in loaded.records:
                self._remember(Event(record.seq, record.topic, record.payload, record.endpoint,
                                     record.plugin, record.ntopic))
            return len(self._ring)

    def close(self) -> None:
        """A clean stop: the log is synced and closed; notifications from endpoints still
        being read are no longer taken (nor acknowledged), so they go to the next bridge."""
        with self._lock:
            self._closed = True
            if self._log is not None:
                self._log.close()
                self._log = None

    def publish(self, topic: str, data: Any, endpoint: Optional[str] = None,
                plugin: Optional[str] = None, ntopic: Optional[str] = None) -> Event:
        """Numbered, logged and offered under one lock, so every listener sees ids in order
        (a resume by ``Last-Event-ID`` then never skips one); serialised before it."""
        payload = serialise(topic, data)
        with self._lock:
            return self._append(topic, payload, endpoint, plugin, ntopic)

    def notify(self, endpoint: str, plugin: str, topic: str, data: Any) -> Event:
        return self.publish(NOTIFICATION, _note(endpoint, plugin, topic, data), endpoint, plugin, topic)

    def notify_once(self, endpoint: str, plugin: str, topic: str, data: Any,
                    stream: str, seq: int) -> int:
        """An endpoint's notification number ``seq`` of ``stream``: published unless it
        already was (a resend after a reconnect), preceded by a ``_orbit`` /
        ``notifications_dropped`` event when numbers were skipped (the endpoint's outbox
        overflowed). Returns how far the stream is in the event log: what the endpoint may
        forget (with a log that cannot be written, less than what was published)."""
        payload = serialise(NOTIFICATION, _note(endpoint, plugin, topic, data))
        with self._lock:
            done = self._streams.get(stream, 0)
            if seq <= done or self._closed:
                return self._logged(stream)
            if seq > done + 1:
                log.warning("endpoint %s dropped %d notification(s) before they reached the bridge",
                            endpoint, seq - done - 1)
                lost = {"count": seq - done - 1, "first": done + 1, "last": seq - 1}
                self._append(NOTIFICATION, serialise(NOTIFICATION, _note(endpoint, DROPPED[0], DROPPED[1], lost)),
                             endpoint, DROPPED[0], DROPPED[1])
            remember(self._streams, stream, seq)
            self._append(NOTIFICATION, payload, endpoint, plugin, topic, stream, seq)
            return self._logged(stream)

    def stream_acked(self, stream: str, acked: int) -> int:
        """A (re)connecting endpoint says how far its notifications were acknowledged;
        returns how far this bridge has them in its log (the larger)."""
        with self._lock:
            remember(self._streams, stream, acked)
            if self._log is not None:
                self._log.claim(stream, acked)
            return self._logged(stream)

    def logged(self, stream: str) -> int:
        """How far ``stream`` may be acknowledged."""
        with self._lock:
            return self._logged(stream)

    def _logged(self, stream: str) -> int:
        """Without a log (none could be opened) the bridge runs from memory and
        acknowledges what it published; with one, only what is on disk."""
        return self._marks.mark(stream) if self._marks is not None else self._streams.get(stream, 0)

    def retry_log(self) -> bool:
        """Write what a failing log held back; True when it caught up since the last call
        (held-back acknowledgements may go out)."""
        with self._lock:
            return self._log is not None and self._log.retry()

    def _append(self, topic: str, payload: str, endpoint: Optional[str], plugin: Optional[str],
                ntopic: Optional[str], stream: Optional[str] = None,
                stream_seq: Optional[int] = None) -> Event:
        self._seq += 1
        event = Event(self._seq, topic, payload, endpoint, plugin, ntopic)
        if self._log is not None:   # on its way to the disk before any listener sees it
            self._log.append(event.seq, topic, b"" if topic == TOPOLOGY else event.data(),
                             endpoint, plugin, ntopic, stream, stream_seq)
        self._remember(event)
        if topic == TOPOLOGY:
            self._topology = event
        for listener in self._listeners:
            listener.offer(event)
        return event

    def _remember(self, event: Event) -> None:
        self._ring.append(event)
        self._ring_used += len(event.wire)
        if event.topic == TOPOLOGY:
            self._topology_seq = event.seq
        while len(self._ring) > self._ring_size or (
                self._ring_used > self._ring_bytes and len(self._ring) > 1):
            self._ring_used -= len(self._ring.popleft().wire)

    def subscribe(self, flt: Filter, last_id: Optional[int],
                  snapshot: Callable[[], Any]) -> "tuple":
        """Register a listener; returns it and what to send first. When ``last_id`` is in
        the ring: the notifications after it, then the current topology if it changed
        meanwhile (old topologies are not replayed). Otherwise one topology snapshot."""
        listener = Listener(flt, self.listener_queue, self.listener_bytes)
        with self._lock:
            seen = self._seq
            need = not self._resumable(last_id) or self._topology_seq > last_id
        snap = serialise(TOPOLOGY, snapshot()) if need else None
        with self._lock:
            if self._topology is not None and (snap is None or self._topology.seq > seen):
                snap = self._topology.payload       # as new as the snapshot, or newer
            if self._resumable(last_id):
                missed: Optional[List[Event]] = self._since(last_id)
            elif last_id is not None and last_id <= self._run_start and self._whole_run():
                missed = list(self._ring)   # an id older than the log (a run without one): all of this run
            else:
                missed = None
            backlog = [e for e in missed or () if e.topic != TOPOLOGY and flt.accepts(e)]
            if missed is None or self._topology_seq > last_id:
                current = Event(self._seq, TOPOLOGY, snap or serialise(TOPOLOGY, snapshot()))
                if missed is None or flt.accepts(current):
                    backlog.append(current)
            self._listeners.append(listener)
        return listener, backlog

    def _resumable(self, last_id: Optional[int]) -> bool:
        """The ring holds everything after ``last_id``: ids are contiguous (every one is
        logged), so that is the case from the event before its first to the newest."""
        if last_id is None:
            return False
        first = self._ring[0].seq if self._ring else self._seq + 1
        return first - 1 <= last_id <= self._seq

    def _whole_run(self) -> bool:
        return not self._ring or self._ring[0].seq == self._run_start + 1

    def _since(self, last_id: int) -> List[Event]:
        """The ring's events after ``last_id``, read from the new end (a resume is recent)."""
        newer = []
        for event in reversed(self._ring):
            if event.seq <= last_id:
                break
            newer.append(event)
        newer.reverse()
        return newer

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def close_all(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.close()

    @property
    def listener_count(self) -> int:
        with self._lock:
            return len(self._listeners)
