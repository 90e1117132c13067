"""The endpoint's side of a plugin's durable notification stream (radical_orbit.plugin.
DurableNotes): what the bridge has not acknowledged yet, and how far the current link has it.

The plugin has each notification on disk already, so memory only caches them: at most
``max_held`` (and ``max_held_bytes``) encoded ones are kept, the oldest unacknowledged
first. When the bridge was away long enough for more to pile up, the rest are read back
from the plugin's disk (its ``read``) when they are resent. A plugin without ``read``
has every unacknowledged one kept in memory. Nothing here survives the process: after a
restart the plugin sends them again.

The service holds its note lock around every call except ``read_back`` (which reads
the plugin's store, whose lock the plugin may hold while it calls ``send``).
"""
import collections
from typing import Any, Callable, List, Optional, Tuple

from ..plugin import DurableNotes

#: read(after, limit) -> up to ``limit`` recorded (seq, topic, data) with seq > after, in order
Reader = Callable[[int, int], List[Tuple[int, str, Any]]]
#: encode(seq, topic, data) -> the note message, or None when it cannot travel (too large)
Encoder = Callable[[int, str, Any], Optional[bytes]]


class DurableOutbox(DurableNotes):
    def __init__(self, plugin: str, stream: str, acked: int, on_acked: Callable[[int], None],
                 send: Callable[["DurableOutbox", int, str, Any], None],
                 close: Callable[["DurableOutbox"], None],
                 read: Optional[Reader] = None, max_held: int = 1000, max_held_bytes: int = 16 * 2**20):
        super().__init__(lambda topic, data: None, on_acked)
        self.plugin = plugin
        self.stream = stream
        #: the highest number the bridge acknowledged (said in the hello of a reconnect)
        self.acked = acked
        #: the highest number the plugin handed to ``send``
        self.last = acked
        #: the current link has every number up to this one, sent in order
        self.sent = acked
        #: the current link caught up with ``last``: a new notification goes out at once
        self.live = False
        #: the cache: seq -> encoded note, ascending, none at or below ``acked``
        self.held: "collections.OrderedDict[int, bytes]" = collections.OrderedDict()
        self.held_bytes = 0
        self.max_held = max_held
        self.max_held_bytes = max_held_bytes
        self._read = read
        self._send = send
        self._close = close

    @property
    def reads_back(self) -> bool:
        return self._read is not None

    def send(self, seq: int, topic: str, data: Any) -> None:
        self._send(self, seq, topic, data)

    def close(self) -> None:
        self._close(self)

    def take(self, seq: int, message: Optional[bytes]) -> bool:
        """Notification ``seq`` from the plugin (``message`` None: it cannot travel); True
        when it should go out on the link now: the link has everything before it."""
        if seq <= self.last:
            return False                    # resent by the plugin: held or on its disk already
        now = self.live and self.sent >= self.last
        self.last = seq
        if message is None:
            if now:
                self.sent = seq             # skipped: the bridge will report the gap
            return False
        if self._read is None or (len(self.held) < self.max_held
                                  and self.held_bytes + len(message) <= self.max_held_bytes):
            self.held[seq] = message
            self.held_bytes += len(message)
        return now

    def attach(self) -> None:
        """A new link: it has what the bridge acknowledged; the rest goes again."""
        self.sent = self.acked
        self.live = False

    def forget(self, acked: int) -> bool:
        """The bridge has everything up to ``acked``; True when that is news."""
        while self.held:
            seq = next(iter(self.held))
            if seq > acked:
                break
            self.held_bytes -= len(self.held.pop(seq))
        self.sent = max(self.sent, min(acked, self.last))
        if acked <= self.acked:
            return False
        self.acked = acked
        return True

    def next_held(self) -> List[Tuple[int, bytes]]:
        """What the cache has to send next, in order: the notes right after ``sent``
        (with no gap before them that the plugin's disk may fill)."""
        out = []
        expect = self.sent + 1
        for seq, message in self.held.items():
            if seq < expect:
                continue
            if seq != expect and self._read is not None:
                break
            out.append((seq, message))
            expect = seq + 1
        return out

    def read_back(self, after: int, limit: int, encode: Encoder) -> List[Tuple[int, Optional[bytes]]]:
        """Recorded notes after ``after`` from the plugin's disk, encoded (outside the note
        lock: the plugin's store has its own)."""
        assert self._read is not None
        return [(seq, encode(seq, topic, data)) for seq, topic, data in self._read(after, limit)]

    def acknowledged(self, acked: int) -> None:
        """Tell the plugin (outside the note lock: it writes its store)."""
        self._on_acked(acked)
