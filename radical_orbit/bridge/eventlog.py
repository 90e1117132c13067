"""The event log on disk: every SSE event the bridge numbers, appended to a file in
the config dir before anyone sees it, so listeners resume by ``Last-Event-ID`` across
a restart (``kill -9`` included) and duplicates resent by endpoints are recognised.

Layout: a directory (mode 0700) holding ``lock`` and segments
``segment-<origin>.log`` (mode 0600), where ``<origin>`` is the id of the last event
before the segment. A segment is a text file of lines::

    <crc32 of the rest, 8 hex digits> <meta JSON>\\t<payload JSON>\\n

The first line of a segment is a header (``{"h": 1, "origin": N, "streams": {...}}``:
the endpoints' notification high-water marks when the segment began); every other
line is one event: ``{"i": id, "t": topic, "e": endpoint, "p": plugin, "n": topic of
a notification, "s": endpoint stream, "q": its sequence number}`` and the event's
``data:`` JSON. Topology events are logged as markers without payload (the current
topology is served instead of old ones). JSON never holds a raw tab or newline, so
lines split unambiguously; a line whose CRC or JSON fails (a write cut short by
``kill -9``, zeros after an OS crash) is skipped, and a torn tail is cut off before
appending.

Each event is one system call (``writev``) to the kernel, no fsync while running: it survives
the bridge process dying; an OS crash may lose what the kernel had not yet written
back. A clean stop fsyncs.

A write that fails (a full disk, an I/O error) is cut back off the file and the event is held
back, in order, with everything after it (bounded like the log); each later append and the
bridge's housekeeping try again, and once a write succeeds the held-back events go to the
disk first, in id order. ``streams`` holds only what is on disk, so the bridge never
acknowledges a notification that is not (``mark``); the outage is logged when it begins, at
most every ERROR_LOG_INTERVAL while it lasts, and when it ends.

Bounded: a segment is closed after ``max_events / SEGMENTS`` events or
``max_bytes / SEGMENTS`` bytes; the oldest segment is deleted once the newer ones
alone hold ``max_events`` events or ``max_bytes`` bytes. One bridge per directory:
an exclusive ``flock`` on ``lock`` (released by the kernel when the process dies).
"""
import collections
import errno
import fcntl
import json
import logging
import os
import re
import time
import zlib
from typing import Any, Dict, List, Optional, Tuple

from .. import config

log = logging.getLogger("radical_orbit.bridge.eventlog")

SEGMENTS = 4                    # closed segments that make up the bound
MAX_STREAMS = 4096              # endpoint streams whose high-water mark is remembered
LOCK_FILE = "lock"
SEGMENT_RE = re.compile(r"^segment-(\d{20})\.log$")
ERROR_LOG_INTERVAL = 600.0      # s between reminders that the log still cannot be written


class LogBusy(Exception):
    """Another live bridge holds this event log."""


class Record:
    """One logged event as read back: what the hub needs to rebuild its ring."""
    __slots__ = ("seq", "topic", "endpoint", "plugin", "ntopic", "payload")

    def __init__(self, meta: Dict[str, Any], payload: bytes):
        self.seq = int(meta["i"])
        self.topic = str(meta["t"])
        self.endpoint = meta.get("e")
        self.plugin = meta.get("p")
        self.ntopic = meta.get("n")
        self.payload = payload


class Loaded:
    """What ``EventLog.open`` found: records in order, the last id, the high-water marks."""

    def __init__(self, max_events: int) -> None:
        self.records: "collections.deque[Record]" = collections.deque(maxlen=max_events)
        self.last_id = 0
        self.streams: "collections.OrderedDict[str, int]" = collections.OrderedDict()
        self.skipped = 0


def encode_line(meta: Dict[str, Any], payload: "bytes | memoryview") -> List[Any]:
    """The pieces of one line, for one ``writev`` (a large payload is not copied)."""
    body = json.dumps(meta, separators=(",", ":")).encode() + b"\t"
    crc = zlib.crc32(payload, zlib.crc32(body)) & 0xffffffff
    return [b"%08x " % crc + body, payload, b"\n"]


def decode_line(line: bytes) -> Optional[Tuple[Dict[str, Any], bytes]]:
    """(meta, payload) of one line without its newline; None when it is damaged."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body) & 0xffffffff:
            return None
        meta_raw, _, payload = body.partition(b"\t")
        meta = json.loads(meta_raw)
    except ValueError:
        return None
    return (meta, payload) if isinstance(meta, dict) else None


def remember(streams: "collections.OrderedDict[str, int]", stream: str, seq: int) -> None:
    """Raise a stream's high-water mark; the least recently advanced streams are forgotten
    beyond MAX_STREAMS (an endpoint process silent that long resends as if new)."""
    if seq > streams.get(stream, 0):
        streams[stream] = seq
    if stream in streams:
        streams.move_to_end(stream)
    while len(streams) > MAX_STREAMS:
        streams.popitem(last=False)


class Segment:
    """One file; ``events`` and ``bytes`` count event lines only (not the header), ``size``
    is where the last whole line ends (what a failed write is cut back to)."""
    __slots__ = ("path", "origin", "events", "bytes", "size", "sealed")

    def __init__(self, path: str, origin: int):
        self.path, self.origin = path, origin
        self.events = self.bytes = self.size = 0
        self.sealed = False     # never append to it again (its damaged end could not be cut)


class Held:
    """An event whose line is not on disk yet: its pieces and the stream mark it carries."""
    __slots__ = ("seq", "pieces", "size", "stream", "stream_seq")

    def __init__(self, seq: int, pieces: List[Any], stream: Optional[str], stream_seq: Optional[int]):
        self.seq, self.pieces, self.stream, self.stream_seq = seq, pieces, stream, stream_seq
        self.size = sum(len(p) for p in pieces)


class EventLog:
    """Appends events; rotates and deletes segments to stay bounded. Not thread-safe:
    the hub calls it under its own lock, which also keeps ids and lines in order."""

    def __init__(self, directory: str, max_events: int, max_bytes: int):
        if max_events < 1 or max_bytes < 1:
            raise ValueError("the event log needs room for at least one event")
        self.directory = os.path.abspath(directory)
        self.max_events, self.max_bytes = max_events, max_bytes
        self.segment_events = max(1, max_events // SEGMENTS)
        self.segment_bytes = max(1, max_bytes // SEGMENTS)
        #: each endpoint stream's high-water mark among the notifications on disk
        self.streams: "collections.OrderedDict[str, int]" = collections.OrderedDict()
        self._segments: List[Segment] = []
        self._fd: Optional[int] = None
        self._lock_fd: Optional[int] = None
        self._held: "collections.deque[Held]" = collections.deque()
        self._held_bytes = 0
        #: streams with a notification dropped from a full backlog: never on disk, so their
        #: mark stays below it for this run (the endpoint resends it to the next bridge)
        self._capped: Dict[str, int] = {}
        self._failing: Optional[str] = None     # why writing fails, while it does
        self._last_error = 0.0
        self._held_total = self._dropped = 0    # events held back, dropped since the outage began
        self._recovered = False

    # -- opening ---------------------------------------------------------------------
    def open(self, start_id: int) -> Loaded:
        """Lock the directory and read what it holds; ``start_id`` numbers a new log.
        Raises LogBusy when another bridge has it, OSError when it cannot be made."""
        config.ensure_dir(self.directory)
        os.chmod(self.directory, 0o700)
        self._lock()
        loaded = Loaded(self.max_events)     # the disk may hold up to twice what is replayed
        for name in sorted(n for n in os.listdir(self.directory) if SEGMENT_RE.match(n)):
            self._read_segment(os.path.join(self.directory, name), loaded)
        if loaded.skipped:
            log.warning("event log %s: skipped %d damaged line(s)", self.directory, loaded.skipped)
        self.streams = loaded.streams
        last = self._segments[-1] if self._segments else None
        if last is None:
            loaded.last_id = max(loaded.last_id, start_id)
            self._start_segment(loaded.last_id)
        elif last.sealed or self._full(last):
            self._start_segment(loaded.last_id)     # the bound is kept at the next roll
        else:
            self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        return loaded

    def _lock(self) -> None:
        path = os.path.join(self.directory, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LogBusy("the event log %s is in use by another bridge (pid %s): stop it, or "
                              "give this bridge its own --event-log-dir or RADICAL_ORBIT_HOME"
                              % (self.directory, holder))
            raise
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        self._lock_fd = fd

    def _read_segment(self, path: str, loaded: Loaded) -> None:
        with open(path, "rb") as f:
            data = f.read()
        origin = int(SEGMENT_RE.match(os.path.basename(path)).group(1))
        segment = Segment(path, origin)
        loaded.last_id = max(loaded.last_id, origin)
        good_end = pos = 0      # good_end: the offset after the last intact line
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:
                loaded.skipped += 1         # a torn last line: no newline
                break
            decoded = decode_line(data[pos:end])
            start, pos = pos, end + 1
            record = self._apply(decoded, loaded) if decoded is not None else False
            if record is False:
                loaded.skipped += 1
                continue
            good_end = pos
            if record is not None:
                segment.events += 1
                segment.bytes += pos - start
        segment.size = good_end
        if good_end < len(data):
            log.warning("event log %s: cutting %d damaged byte(s) off the end", path, len(data) - good_end)
            try:
                os.truncate(path, good_end)
            except OSError as exc:
                log.warning("cannot cut the damaged end of %s (%s): starting a new segment", path, exc)
                segment.sealed = True
        self._segments.append(segment)

    @staticmethod
    def _apply(decoded: Tuple[Dict[str, Any], bytes], loaded: Loaded):
        """Take one intact line into ``loaded``: the Record, None for a header, False for
        a line that makes no sense (unknown keys, an id that goes back)."""
        meta, payload = decoded
        try:
            if meta.get("h"):
                for stream, seq in (meta.get("streams") or {}).items():
                    remember(loaded.streams, str(stream), int(seq))
                return None
            record = Record(meta, payload)
            if record.seq <= loaded.last_id:
                return False
            if meta.get("s") is not None:
                remember(loaded.streams, str(meta["s"]), int(meta["q"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        loaded.records.append(record)
        loaded.last_id = record.seq
        return record

    # -- appending ---------------------------------------------------------------------
    def append(self, seq: int, topic: str, payload: "bytes | memoryview", endpoint: Optional[str] = None,
               plugin: Optional[str] = None, ntopic: Optional[str] = None,
               stream: Optional[str] = None, stream_seq: Optional[int] = None) -> None:
        """One line, one write(). A failing disk is never raised: the event is held back
        (after any held back before it) and written once the disk takes it; the caller's
        listeners still get it at once (``mark`` says what is on disk)."""
        meta: Dict[str, Any] = {"i": seq, "t": topic}
        if endpoint is not None:
            meta["e"], meta["p"], meta["n"] = endpoint, plugin, ntopic
        if stream is not None:
            meta["s"], meta["q"] = stream, stream_seq
        self._held.append(Held(seq, encode_line(meta, payload), stream, stream_seq))
        self._held_bytes += self._held[-1].size
        self._flush()
        if self._held:              # written in order: this one is among what is left
            self._bound_held()

    def retry(self) -> bool:
        """Write what is held back, if anything; True when the log caught up after an
        outage since the last call (acknowledgements held back may go out now)."""
        if self._held:
            self._flush()
        recovered, self._recovered = self._recovered and not self._held, False
        return recovered

    def mark(self, stream: str) -> int:
        """How far ``stream``'s notifications are on disk: what may be acknowledged."""
        done = self.streams.get(stream, 0)
        return min(done, self._capped.get(stream, done))

    def claim(self, stream: str, acked: int) -> None:
        """An endpoint says a bridge acknowledged ``stream`` up to ``acked`` (so a log had it)."""
        remember(self.streams, stream, acked)

    def marks(self) -> Dict[str, int]:
        return {stream: self.mark(stream) for stream in self.streams}

    def _flush(self) -> None:
        """Write the held-back events in order until one fails."""
        while self._held:
            entry = self._held[0]
            if self._fd is None:
                self._roll(entry.seq - 1)       # the last roll failed: try again
                if self._fd is None:
                    return
            if not self._write(entry):
                return
            self._held.popleft()
            self._held_bytes -= entry.size
            if entry.stream is not None:
                remember(self.streams, entry.stream, entry.stream_seq)
            segment = self._segments[-1]
            segment.events += 1
            segment.bytes += entry.size
            if self._full(segment):
                self._roll(entry.seq)
        if self._failing is not None and self._fd is not None:
            log.warning("event log %s can be written again: %d held-back event(s) written%s",
                        self.directory, self._held_total - self._dropped,
                        ", %d were dropped while it could not" % self._dropped if self._dropped else "")
            self._failing, self._recovered = None, True
            self._held_total = self._dropped = 0

    def _bound_held(self) -> None:
        """Beyond the log's own bounds the oldest held-back events are dropped: never on
        disk, so their streams are never acknowledged past them in this run."""
        self._held_total += 1
        while len(self._held) > 1 and (len(self._held) > self.max_events or self._held_bytes > self.max_bytes):
            entry = self._held.popleft()
            self._held_bytes -= entry.size
            self._dropped += 1
            if entry.stream is not None:
                self._capped[entry.stream] = min(self._capped.get(entry.stream, entry.stream_seq),
                                                 entry.stream_seq - 1)

    def _full(self, segment: Segment) -> bool:
        return segment.events >= self.segment_events or segment.bytes >= self.segment_bytes

    def _write(self, entry: Held) -> bool:
        """All of one line, or nothing: a failed write is cut back off the file, so the
        next line does not begin inside a torn one."""
        segment = self._segments[-1]
        try:
            done = os.writev(self._fd, entry.pieces)
            if done < entry.size:   # a regular file writes short when the disk fills
                rest = memoryview(b"".join(bytes(p) for p in entry.pieces))[done:]
                while rest:
                    rest = rest[os.write(self._fd, rest):]
            segment.size += entry.size
            return True
        except OSError as exc:
            self._failed(exc)
        try:
            os.ftruncate(self._fd, segment.size)
        except OSError as exc:
            log.warning("cannot cut a failed write off %s (%s): starting a new segment", segment.path, exc)
            os.close(self._fd)
            self._fd = None
            segment.sealed = True
        return False

    def _failed(self, exc: Exception) -> None:
        """Said when the outage begins, then at most every ERROR_LOG_INTERVAL."""
        now = time.monotonic()
        if self._failing is None:
            self._failing = str(exc)
            self._last_error = now
            log.error("cannot write the event log in %s: %s; new events still reach listeners, but "
                      "notifications are not acknowledged to endpoints (which keep them) until it "
                      "can be written; held back meanwhile (at most %d events, %d MiB)",
                      self.directory, exc, self.max_events, self.max_bytes // 2**20)
        elif now - self._last_error > ERROR_LOG_INTERVAL:
            self._last_error = now
            log.error("the event log in %s still cannot be written (%s): %d event(s) held back, %d "
                      "dropped so far", self.directory, exc, len(self._held), self._dropped)

    def _roll(self, last_id: int) -> None:
        """Close the current segment, start the next, delete what the bound no longer needs."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            self._start_segment(last_id)
        except OSError as exc:
            self._failed(exc)
            return
        while len(self._segments) > 2:
            newer = self._segments[1:]
            if (sum(s.events for s in newer) < self.max_events
                    and sum(s.bytes for s in newer) < self.max_bytes):
                break
            oldest = self._segments.pop(0)
            try:
                os.unlink(oldest.path)
            except OSError as exc:
                log.warning("cannot delete old event log segment %s: %s", oldest.path, exc)

    def _start_segment(self, origin: int) -> None:
        """A new segment file beginning with its header; OSError (and no file) when the
        header cannot be written."""
        if self._segments and self._segments[-1].origin == origin:
            self._segments.pop()            # an empty segment with the same name: made anew
        path = os.path.join(self.directory, "segment-%020d.log" % origin)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        header = b"".join(encode_line({"h": 1, "origin": origin, "streams": self.marks()}, b""))
        try:
            if os.write(fd, header) != len(header):
                raise OSError(errno.ENOSPC, "short write of a segment header")
        except OSError:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        self._fd = fd
        segment = Segment(path, origin)
        segment.size = len(header)
        self._segments.append(segment)

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """A clean stop: the log reaches the disk (what is held back, if it now can: the
        rest was never acknowledged), the lock is released."""
        if self._held:
            self._flush()
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def files(self) -> List[str]:
        return [s.path for s in self._segments]
