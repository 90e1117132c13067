"""The SSE hub: numbered events, a bounded replay ring, bounded per-listener queues.

Event ids grow monotonically across bridge restarts (they start from the clock
in microseconds), so a ``Last-Event-ID`` from an earlier run is recognised: such
a listener is sent everything this run published (while the ring still holds
all of it), else one fresh topology snapshot.
"""
import collections
import json
import threading
import time
from typing import Any, Callable, Deque, List, Optional

TOPOLOGY = "topology"
NOTIFICATION = "notification"


def serialise(topic: str, data: Any) -> str:
    """An event's ``data:`` line, made once, outside the hub's lock."""
    return json.dumps({"topic": topic, "data": data}, separators=(",", ":"), default=str)


class Event:
    __slots__ = ("seq", "topic", "endpoint", "plugin", "ntopic", "payload", "wire")

    def __init__(self, seq: int, topic: str, payload: str, endpoint: Optional[str] = None,
                 plugin: Optional[str] = None, ntopic: Optional[str] = None):
        self.seq = seq
        self.topic = topic
        self.endpoint = endpoint
        self.plugin = plugin
        self.ntopic = ntopic
        self.payload = payload
        self.wire = ("id: %d\ndata: %s\n\n" % (seq, payload)).encode()


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
            elif (len(self.queue) >= self.max_queue
                    or self.queued_bytes + len(event.wire) > self.max_bytes):
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
    """Bounded in events and in bytes: the replay ring and every listener's queue."""

    def __init__(self, ring_size: int = 4096, listener_queue: int = 2048,
                 ring_bytes: int = 64 * 2**20, listener_bytes: int = 16 * 2**20):
        self._ring: Deque[Event] = collections.deque()
        self._ring_size = ring_size
        self._ring_bytes = ring_bytes
        self._ring_used = 0
        self._listeners: List[Listener] = []
        self._lock = threading.Lock()
        self._seq = self._run_start = int(time.time() * 1e6)
        self.listener_queue = listener_queue
        self.listener_bytes = listener_bytes

    def publish(self, topic: str, data: Any, endpoint: Optional[str] = None,
                plugin: Optional[str] = None, ntopic: Optional[str] = None) -> Event:
        """Numbered and offered under one lock, so every listener sees ids in order
        (a resume by ``Last-Event-ID`` then never skips one); serialised before it."""
        payload = serialise(topic, data)
        with self._lock:
            self._seq += 1
            event = Event(self._seq, topic, payload, endpoint, plugin, ntopic)
            self._ring.append(event)
            self._ring_used += len(event.wire)
            while len(self._ring) > self._ring_size or (
                    self._ring_used > self._ring_bytes and len(self._ring) > 1):
                self._ring_used -= len(self._ring.popleft().wire)
            for listener in self._listeners:
                listener.offer(event)
        return event

    def notify(self, endpoint: str, plugin: str, topic: str, data: Any) -> Event:
        return self.publish(NOTIFICATION, {"endpoint": endpoint, "plugin": plugin,
                                           "topic": topic, "data": data},
                            endpoint, plugin, topic)

    def subscribe(self, flt: Filter, last_id: Optional[int],
                  snapshot: Callable[[], Any]) -> "tuple":
        """Register a listener; returns it and what to send first: the missed events
        when ``last_id`` is inside the ring, else one topology snapshot."""
        listener = Listener(flt, self.listener_queue, self.listener_bytes)
        seen = self._seq
        snap = serialise(TOPOLOGY, snapshot()) if last_id is None or last_id > seen else None
        with self._lock:
            first = self._ring[0].seq if self._ring else self._seq + 1
            whole_run = bool(self._ring) and first == self._run_start + 1
            if last_id is not None and first - 1 <= last_id <= self._seq:
                backlog = [e for e in self._ring if e.seq > last_id and flt.accepts(e)]
            elif last_id is not None and last_id <= self._run_start and whole_run:
                # a listener of an earlier bridge run: everything of this run is news to it
                backlog = [e for e in self._ring if flt.accepts(e)]
            else:
                newer = [e for e in self._ring if e.seq > seen and e.topic == TOPOLOGY]
                if newer:               # the topology changed while the snapshot was made
                    snap = newer[-1].payload
                elif snap is None:
                    snap = serialise(TOPOLOGY, snapshot())
                backlog = [Event(self._seq, TOPOLOGY, snap)]
            self._listeners.append(listener)
        return listener, backlog

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
