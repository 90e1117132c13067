"""The endpoint's side of a plugin's durable notification stream (radical_orbit.plugin.
DurableNotes): the encoded notifications the bridge has not acknowledged yet, in order.

The plugin has each one on disk already, so nothing here needs bounds or survives the
process: after a restart the plugin sends them again. The service holds its note lock
around every call.
"""
import collections
from typing import Any, Callable, Deque, Tuple

from ..plugin import DurableNotes


class DurableOutbox(DurableNotes):
    def __init__(self, plugin: str, stream: str, acked: int, on_acked: Callable[[int], None],
                 send: Callable[["DurableOutbox", int, str, Any], None],
                 close: Callable[["DurableOutbox"], None]):
        super().__init__(lambda topic, data: None, on_acked)
        self.plugin = plugin
        self.stream = stream
        #: the highest number the bridge acknowledged (said in the hello of a reconnect)
        self.acked = acked
        self.notes: Deque[Tuple[int, bytes]] = collections.deque()
        self._send = send
        self._close = close

    def send(self, seq: int, topic: str, data: Any) -> None:
        self._send(self, seq, topic, data)

    def close(self) -> None:
        self._close(self)

    def forget(self, acked: int) -> bool:
        """The bridge has everything up to ``acked``; True when that is news."""
        while self.notes and self.notes[0][0] <= acked:
            self.notes.popleft()
        if acked <= self.acked:
            return False
        self.acked = acked
        return True

    def acknowledged(self, acked: int) -> None:
        """Tell the plugin (outside the note lock: it writes its store)."""
        self._on_acked(acked)
