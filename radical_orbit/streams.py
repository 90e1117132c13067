"""Flow-controlled body streams shared by the bridge and the endpoint.

A body larger than one chunk crosses as DATA messages. The receiver keeps at
most ``window`` bytes buffered per stream and returns CREDIT as its consumer
reads, so memory stays bounded on both sides for any body size, and a slow
stream never blocks others on the same socket.

``pump`` is the sending side, one implementation for every body that streams:
the bridge's request bodies, the endpoint's response bodies, and plugins that
move data (staging).
"""
import collections
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple

from .errors import OrbitError, Timeout


class SendWindow:
    """How many bytes the peer still lets us send on one stream."""

    def __init__(self, size: int):
        self._available = size
        self._cond = threading.Condition()
        self._error: Optional[OrbitError] = None

    def take(self, n: int, timeout: float) -> None:
        """Account for ``n`` bytes just sent, waiting first while the window is used up.

        Callers pass the size of the chunk they sent last, so less than a window plus two
        chunks is ever in flight; receivers allow for that (``max_buffered``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._available <= 0 and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("peer granted no flow-control credit for %.0f s" % timeout)
                self._cond.wait(left)
            if self._error is not None:
                raise self._error
            self._available -= n

    def grant(self, n: int) -> None:
        with self._cond:
            self._available += n
            self._cond.notify_all()

    def fail(self, error: OrbitError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()


#: a body piece and whether it is the last one
Piece = Tuple[bytes, bool]


def pump(pieces: Iterator[Piece], send_head: Callable[[bytes, bool], Any],
         send_data: Callable[[bytes, bool], Any], open_window: Callable[[], SendWindow],
         idle: float) -> bool:
    """Send a body under flow control: the first piece with the message head
    (``send_head(chunk, last)``), each further one as DATA (``send_data``) once the
    window has room.

    The window is opened before the head goes out (the peer may grant credit at once),
    and only when more than one piece follows. Returns False when a send returned
    False (the link is gone); the window's errors (no credit in ``idle`` s, the peer
    cancelled or answered early) propagate to the caller."""
    chunk, last = next(pieces, (b"", True))
    window = open_window() if not last else None
    if send_head(chunk, last) is False:
        return False
    while not last:
        window.take(len(chunk), idle)
        chunk, last = next(pieces, (b"", True))
        if send_data(chunk, last) is False:
            return False
    return True


def with_last(chunks: Iterable[bytes]) -> Iterator[Piece]:
    """Each chunk with a flag telling whether it is the last one (for ``pump``)."""
    it = iter(chunks)
    try:
        prev = next(it)
    except StopIteration:
        return
    try:
        for chunk in it:
            yield prev, False
            prev = chunk
        yield prev, True
    finally:
        close = getattr(it, "close", None)
        if close:
            close()


class ReceiveStream:
    """A file-like body fed by DATA messages; ``read`` returns credit to the sender.

    ``credit(n)`` is called after the consumer took ``n`` bytes, outside the lock.
    """

    def __init__(self, credit: Callable[[int], None], timeout: float,
                 max_buffered: Optional[int] = None):
        self._credit = credit
        self._timeout = timeout
        self._max_buffered = max_buffered
        self._buffered = 0
        self._chunks: "collections.deque[bytes]" = collections.deque()
        self._cond = threading.Condition()
        self._ended = False
        self._error: Optional[OrbitError] = None

    def feed(self, chunk: bytes, end: bool) -> None:
        """Queue a chunk; a sender that ignores the window fails the stream (502)
        instead of growing this buffer."""
        with self._cond:
            if chunk:
                if self._max_buffered is not None and self._buffered + len(chunk) > self._max_buffered:
                    self._error = OrbitError("the peer sent past its flow-control window", 502)
                    self._cond.notify_all()
                    return
                self._chunks.append(chunk)
                self._buffered += len(chunk)
            if end:
                self._ended = True
            self._cond.notify_all()

    def fail(self, error: OrbitError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def _next_chunk(self) -> bytes:
        """The next buffered chunk, b"" at the end; waits at most ``timeout`` for data."""
        deadline = time.monotonic() + self._timeout
        with self._cond:
            while not self._chunks:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    return b""
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("no body data arrived for %.0f s" % self._timeout)
                self._cond.wait(left)
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            return chunk

    def _consumed(self, n: int) -> None:
        if not self._ended and n:
            self._credit(n)

    def iter_chunks(self) -> Iterator[bytes]:
        while True:
            chunk = self._next_chunk()
            if not chunk:
                return
            self._consumed(len(chunk))
            yield chunk

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(self.iter_chunks())
        out = []
        got = 0
        while got < size:
            chunk = self._next_chunk()
            if not chunk:
                break
            want = size - got
            if len(chunk) > want:
                with self._cond:
                    self._chunks.appendleft(chunk[want:])
                    self._buffered += len(chunk) - want
                chunk = chunk[:want]
            self._consumed(len(chunk))
            out.append(chunk)
            got += len(chunk)
        return b"".join(out)

