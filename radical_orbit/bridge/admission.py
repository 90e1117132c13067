"""Connection admission: which accepted connection gets a thread, and how the others
are answered.

Every connection the bridge serves costs a thread (docs/architecture.md), so
connections that have not authenticated yet get a budget of their own, per source
address and overall, apart from the authenticated clients and endpoints they could
otherwise crowd out. A connection leaves that budget once a request on it carried the
token (an endpoint's ``/register`` does too).

When a cap is reached, a newcomer takes the place of the oldest unauthenticated
connection still waiting for a request head (what a slowloris holds open), from the same
source at the per-source cap, from any source at the others, if that one has waited at
least ``shed_min_age``: a real client sends its head within milliseconds and
authenticates, so it keeps getting in while the slow ones are shed. Otherwise the
newcomer is answered ``503`` with ``Retry-After`` and closed, never silently. Refusals
are summarised in the log at most once per interval, never one line each.
"""
import collections
import json
import logging
import queue
import socket
import ssl
import threading
import time
from typing import Dict, Optional, Tuple

from ..errors import envelope
from ..tlssocket import TLSSocket

log = logging.getLogger("radical_orbit.bridge.admission")

#: open connections of any kind (one thread each)
MAX_CONNECTIONS = 10000
#: connections without a successful authentication yet, over all sources
MAX_UNAUTHENTICATED = 1024
#: the same, from one source address
MAX_UNAUTHENTICATED_PER_SOURCE = 64
#: an unauthenticated connection waiting this long for a head may be shed for a newcomer:
#: long enough for a new connection's thread to read the head a real client sent at once,
#: short enough that an attacker would need 4 new connections per unauthenticated slot
#: and second (4000/s at the default cap) to keep newcomers out
SHED_MIN_AGE = 0.25
#: what a refused client is told to wait
RETRY_AFTER_S = 5
#: at most one summary line of refusals per this many seconds
SUMMARY_INTERVAL = 10.0
#: TLS refusals need a handshake before the 503: a few threads, a short queue, a short deadline
REFUSAL_THREADS = 2
REFUSAL_QUEUE = 64
REFUSAL_HANDSHAKE_TIMEOUT = 2.0
#: reads of at most 64 KiB dropped before a refused plain connection is closed
DROP_READS = 4
#: file descriptors kept for everything but connections (logs, listening socket, plugins)
FD_RESERVE = 64
#: sources named per reason in a summary line
SUMMARY_SOURCES = 3
#: what RefusalLog counts besides refusals (whose reason is the cap that refused)
SHED = "shed"
CUT = "cut"


class Ticket:
    """One admitted connection's place in the budgets."""

    __slots__ = ("address", "sock", "waiting_since", "authenticated", "shed", "released")

    def __init__(self, address: str, sock: socket.socket, now: float):
        self.address = address
        self.sock = sock                  # the plain socket, also under TLS
        self.waiting_since = now
        self.authenticated = False
        self.shed = False
        self.released = False


class Admission:
    """The connection budgets. Every method is O(1) under one short lock."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS,
                 max_unauthenticated: int = MAX_UNAUTHENTICATED,
                 max_per_source: int = MAX_UNAUTHENTICATED_PER_SOURCE,
                 shed_min_age: float = SHED_MIN_AGE, summary_interval: float = SUMMARY_INTERVAL):
        for name, value in (("max_connections", max_connections),
                            ("max_unauthenticated", max_unauthenticated),
                            ("max_unauthenticated_per_source", max_per_source)):
            if value < 1:
                raise ValueError("%s must be at least 1, not %r" % (name, value))
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self.max_per_source = max_per_source
        self.shed_min_age = shed_min_age
        self.stats = RefusalLog(summary_interval)
        self._lock = threading.Lock()
        self._total = 0
        self._unauthenticated = 0
        self._per_source: Dict[str, int] = {}
        #: unauthenticated connections waiting for a request head, oldest first: all, and by source
        self._waiting: "collections.OrderedDict[Ticket, None]" = collections.OrderedDict()
        self._waiting_from: "Dict[str, collections.OrderedDict[Ticket, None]]" = {}

    def admit(self, address: str, sock: socket.socket) -> Tuple[Optional[Ticket], str]:
        """A ticket for a new connection, or None and the cap that refused it."""
        now = time.monotonic()
        with self._lock:
            if self._per_source.get(address, 0) >= self.max_per_source:
                cap = "per-source cap %d" % self.max_per_source
                victim = self._oldest(self._waiting_from.get(address), now)
            elif self._unauthenticated >= self.max_unauthenticated:
                cap = "unauthenticated cap %d" % self.max_unauthenticated
                victim = self._oldest(self._waiting, now)
            elif self._total >= self.max_connections:
                cap = "--max-connections %d" % self.max_connections
                victim = self._oldest(self._waiting, now)
            else:
                cap, victim = "", None
            if victim is not None:
                victim.shed = True
                self._release(victim)
                cap = ""
            if cap:
                ticket = None
            else:
                ticket = Ticket(address, sock, now)
                self._total += 1
                self._unauthenticated += 1
                self._per_source[address] = self._per_source.get(address, 0) + 1
                self._wait(ticket)
        if victim is not None:
            self.stats.note(SHED, victim.address)
            _shut_reading(victim.sock)
        if cap:
            self.stats.note(cap, address)
        return ticket, cap

    def _oldest(self, waiting, now: float) -> Optional[Ticket]:
        """The first of ``waiting`` if it has waited long enough to be shed (the caller
        releases its place at once; its thread wakes, answers 503 and closes)."""
        for ticket in waiting or ():
            return ticket if now - ticket.waiting_since >= self.shed_min_age else None
        return None

    def _wait(self, ticket: Ticket) -> None:
        self._waiting[ticket] = None
        self._waiting_from.setdefault(ticket.address, collections.OrderedDict())[ticket] = None

    def _unwait(self, ticket: Ticket) -> None:
        if ticket in self._waiting:
            del self._waiting[ticket]
            mine = self._waiting_from[ticket.address]
            del mine[ticket]
            if not mine:
                del self._waiting_from[ticket.address]

    def await_head(self, ticket: Ticket) -> None:
        """The connection waits for its next request head: sheddable while unauthenticated."""
        with self._lock:
            if not (ticket.authenticated or ticket.released or ticket in self._waiting):
                ticket.waiting_since = time.monotonic()
                self._wait(ticket)

    def head_done(self, ticket: Ticket) -> bool:
        """The head arrived (or reading it ended): no longer sheddable. False if it was shed."""
        with self._lock:
            self._unwait(ticket)
            return not ticket.shed

    def authenticated(self, ticket: Ticket) -> None:
        """A request on this connection carried the token: out of the unauthenticated budget."""
        with self._lock:
            if ticket.authenticated or ticket.released:
                return
            ticket.authenticated = True
            self._unwait(ticket)
            self._leave_unauthenticated(ticket)

    def release(self, ticket: Ticket) -> None:
        """The connection is closed."""
        with self._lock:
            self._release(ticket)

    def _release(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self._total -= 1
        self._unwait(ticket)
        if not ticket.authenticated:
            self._leave_unauthenticated(ticket)

    def _leave_unauthenticated(self, ticket: Ticket) -> None:
        self._unauthenticated -= 1
        left = self._per_source[ticket.address] - 1
        if left:
            self._per_source[ticket.address] = left
        else:
            del self._per_source[ticket.address]

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return {"connections": self._total, "unauthenticated": self._unauthenticated,
                    "waiting_for_head": len(self._waiting), "sources": len(self._per_source)}


def connections_the_fd_limit_allows(wanted: int) -> int:
    """Raise the soft file-descriptor limit (up to the hard one) so that ``wanted``
    connections fit, and say how many do: past the limit, accept() would fail
    (EMFILE) and new connections would wait unanswered instead of getting 503."""
    try:
        import resource
    except ImportError:         # not a Unix
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


def _shut_reading(sock: socket.socket) -> None:
    """Wake the thread blocked reading ``sock``: its read sees the end of the stream."""
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


class RefusalLog:
    """Counts refusals, shed and cut connections by reason and source; ``summary`` gives
    one line for all of them at most once per interval."""

    def __init__(self, interval: float = SUMMARY_INTERVAL):
        self.interval = interval
        self._lock = threading.Lock()
        self._counts: "collections.Counter[Tuple[str, str]]" = collections.Counter()
        self._window_start: Optional[float] = None
        self._last_summary = -interval

    def note(self, reason: str, address: str) -> None:
        with self._lock:
            if self._window_start is None:
                self._window_start = time.monotonic()
            self._counts[(reason, address)] += 1

    def summary(self) -> Optional[Tuple[int, str]]:
        """(log level, line) for what was counted since the last one, if it is time for
        one: a warning for refusals and shed connections, info for cut ones only."""
        now = time.monotonic()
        with self._lock:
            if not self._counts or now - self._last_summary < self.interval:
                return None
            counts, self._counts = self._counts, collections.Counter()
            span = now - (self._window_start or now)
            self._window_start = None
            self._last_summary = now
        by_reason: Dict[str, "collections.Counter[str]"] = collections.defaultdict(collections.Counter)
        for (reason, address), n in counts.items():
            by_reason[reason][address] += n
        refusals = []
        for reason in sorted(set(by_reason) - {SHED, CUT}):
            refusals.append("%s: %s" % (reason, _tally(by_reason[reason])))
        parts = []
        if refusals:
            parts.append("refused %d connections in the last %.0f s (%s)" % (
                sum(sum(by_reason[r].values()) for r in by_reason if r not in (SHED, CUT)),
                max(span, 1.0), "; ".join(refusals)))
        if SHED in by_reason:
            parts.append("shed slow unauthenticated connections for newcomers: %s" % _tally(by_reason[SHED]))
        if CUT in by_reason:
            parts.append("closed at the request-head deadline: %s" % _tally(by_reason[CUT]))
        if not refusals:
            parts[0] = "in the last %.0f s: %s" % (max(span, 1.0), parts[0])
        level = logging.WARNING if set(by_reason) - {CUT} else logging.INFO
        return level, "; ".join(parts)


def _tally(sources: "collections.Counter[str]") -> str:
    """``1200, from 127.0.0.5 800, 127.0.0.6 400 and 3 more``"""
    named = ", ".join("%s %d" % pair for pair in sources.most_common(SUMMARY_SOURCES))
    more = len(sources) - SUMMARY_SOURCES
    return "%d, from %s%s" % (sum(sources.values()), named, " and %d more" % more if more > 0 else "")


def busy_response(detail: str) -> bytes:
    """The whole 503 answer for a connection that is refused or shed."""
    body = json.dumps(envelope(503, detail)).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nServer: radical-orbit\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\nRetry-After: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), RETRY_AFTER_S, body))


def refusal_detail(reason: str) -> str:
    return "the bridge is busy (%s): retry after %d s" % (reason, RETRY_AFTER_S)


class Refuser:
    """Answers refused connections with 503 and closes them, without a thread each.

    Plain sockets are answered by the accept loop itself: one non-blocking send of a few
    hundred bytes. Under TLS the answer needs a handshake first, done by a few threads
    with a short queue and a short deadline; what does not fit is closed unanswered."""

    def __init__(self, tls: Optional[ssl.SSLContext]):
        self.tls = tls
        self._queue: "queue.Queue[Optional[Tuple[socket.socket, bytes]]]" = queue.Queue(REFUSAL_QUEUE)
        self._threads = []
        self._lock = threading.Lock()

    def refuse(self, sock: socket.socket, reason: str) -> None:
        data = busy_response(refusal_detail(reason))
        if self.tls is None:
            answer_and_close(sock, data)
            return
        self._start_threads()
        try:
            self._queue.put_nowait((sock, data))
        except queue.Full:
            _close(sock)

    def _start_threads(self) -> None:
        if self._threads:
            return
        with self._lock:
            while len(self._threads) < REFUSAL_THREADS:
                thread = threading.Thread(target=self._run, name="http-refuse-%d" % len(self._threads),
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            sock, data = item
            try:
                tls = TLSSocket(sock, self.tls, server_side=True)
                tls.do_handshake(REFUSAL_HANDSHAKE_TIMEOUT)
                sock.settimeout(REFUSAL_HANDSHAKE_TIMEOUT)
                tls.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except (OSError, ssl.SSLError):
                pass
            finally:
                _close(sock)

    def stop(self) -> None:
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break


def answer_and_close(sock: socket.socket, data: bytes) -> None:
    """Send a short answer without blocking, then close. What the client already sent is
    read and dropped first, so that the close is a FIN after the answer, not a reset."""
    try:
        sock.setblocking(False)
        _drop_pending(sock)
        sock.send(data)
        sock.shutdown(socket.SHUT_WR)
        _drop_pending(sock)
    except OSError:
        pass
    finally:
        _close(sock)


def _drop_pending(sock: socket.socket) -> None:
    try:
        for _ in range(DROP_READS):
            if not sock.recv(65536):
                return
    except OSError:
        pass


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
