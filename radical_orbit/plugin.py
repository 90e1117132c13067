"""The plugin framework: Plugin, PluginSession, the ``route`` decorator and the
Request / Response objects a handler sees.

A plugin is a plain class. Its routes are methods decorated with
``@route("GET", "metrics/{sid}")``; a rule with ``{sid}`` receives the live
``session`` instead of the id (410 once it expired, 404 if it never existed),
and every such call refreshes the session's idle timer.
"""
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union
from urllib.parse import parse_qs, urlencode

from . import router
from .descriptor import PluginDescriptor
from .errors import BadRequest, Gone, NotFound, PayloadTooLarge, Unavailable

#: A JSON body larger than this is refused with 413; large data goes through ``req.stream``.
MAX_JSON_BODY = 16 * 2**20
#: The piece size ``Request.iter_body`` reads when the stream does not bring its own.
BODY_PIECE = 256 * 1024
#: How many expired session ids are remembered so that they answer 410, not 404.
EXPIRED_MEMORY = 4096


def parse_query(query: str) -> Dict[str, List[str]]:
    """A plugin request's query string as lists of values. Percent-escapes that are not
    UTF-8 decode as surrogates (``surrogateescape``, what Python's os functions use), so a
    file name that is not valid UTF-8 names the same file on the endpoint, where U+FFFD
    would have named another one; valid UTF-8 decodes as before."""
    return parse_qs(query, keep_blank_values=True, errors="surrogateescape")


def encode_query(query: Dict[str, Any]) -> str:
    """The inverse of ``parse_query`` for one value per key: a str holding surrogates
    (a name that is not UTF-8) is sent as its original bytes, percent-escaped."""
    return urlencode({k: str(v) for k, v in query.items() if v is not None}, errors="surrogateescape")


def route(method: str, rule: str, inline: bool = False) -> Callable:
    """Declare a plugin route: ``@route("POST", "submit/{sid}")``.

    ``inline=True`` is for handlers that only compute from memory and never block
    (no I/O, no subprocess, no waiting on locks others hold long): the endpoint runs
    them on its link's reader thread, skipping the hand-off to a worker. A blocking
    inline handler stalls every call on that endpoint, so when in doubt, leave it off.
    """
    declare = router.route(method, rule)

    def mark(func):
        func._orbit_inline = inline
        return declare(func)
    return mark


class Request:
    """What a handler receives. The body is a stream; ``body`` and ``json()`` read it whole."""

    def __init__(self, method: str, path: str, query: Optional[Dict[str, list]] = None,
                 headers: Optional[Dict[str, str]] = None, stream: Any = None,
                 request_id: str = "", content_length: Optional[int] = None):
        self.method = method.upper()
        self.path = path
        self.query_lists = query or {}
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.stream = stream
        self.request_id = request_id
        self.content_length = content_length
        self._body: Optional[bytes] = None

    @property
    def query(self) -> Dict[str, str]:
        """The last value of each query parameter."""
        return {k: v[-1] for k, v in self.query_lists.items() if v}

    def query_int(self, name: str, low: int, high: int, default: Optional[int] = None) -> int:
        """Query parameter ``name`` as an int in ``[low, high]``; 400 when it is not one,
        or when it is missing and there is no ``default``."""
        raw = self.query.get(name)
        if raw is None and default is not None:
            return default
        try:
            value = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise BadRequest("query parameter %s must be an integer" % name)
        if not low <= value <= high:
            raise BadRequest("query parameter %s must be between %d and %d" % (name, low, high))
        return value

    def query_bool(self, name: str, default: bool = False) -> bool:
        """Query parameter ``name`` as a boolean (true/false, 1/0, yes/no, on/off; a bare
        ``?name`` is true); 400 for anything else."""
        raw = self.query_lists.get(name)
        if not raw:
            return default
        text = raw[-1].strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise BadRequest("query parameter %s must be true or false, not %r" % (name, raw[-1][:40]))

    def json_object(self) -> Dict[str, Any]:
        """The body as a JSON object (an empty body is ``{}``); 400 for any other JSON."""
        body = self.json()
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = read_capped(self.stream, MAX_JSON_BODY)
        return self._body

    def iter_body(self, size: int = BODY_PIECE) -> Iterator[bytes]:
        """The body in pieces of at most ``size`` bytes as they arrive, for bodies of any
        size; a stream that already holds whole pieces (a streamed body from the bridge)
        hands them over without copying."""
        stream = self.stream
        if stream is None:
            return
        whole = getattr(stream, "iter_chunks", None)
        if whole is not None:
            yield from whole()
            return
        while True:
            piece = stream.read(size)
            if not piece:
                return
            yield piece

    def json(self) -> Any:
        raw = self.body
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:      # RecursionError: nested too deep
            raise BadRequest("request body is not valid JSON: %s" % exc)


def body_str(body: Dict[str, Any], name: str, what: str = "a non-empty string") -> str:
    """Field ``name`` of a JSON body, a non-empty string; 400 naming ``what`` otherwise."""
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest("body needs %r: %s" % (name, what))
    return value


def body_bool(body: Dict[str, Any], name: str, default: bool = False) -> bool:
    """Field ``name`` of a JSON body, true or false (``default`` when absent); 400 for
    anything else (``"false"`` and ``0`` are not booleans)."""
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest("%r must be true or false" % name)
    return value


_TRUE = frozenset(("", "1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))


def read_capped(stream: Any, limit: int) -> bytes:
    if stream is None:
        return b""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge("request body exceeds %d bytes; use a streamed route" % limit)
    return data


Body = Union[bytes, Iterable[bytes], Any]


class Response:
    """A handler's explicit answer. ``body`` is bytes, an iterable of bytes, or a
    file-like object with ``read`` (streamed in chunks, never held whole)."""

    def __init__(self, body: Body = b"", status: int = 200,
                 content_type: str = "application/json",
                 headers: Optional[Dict[str, str]] = None, length: Optional[int] = None):
        self.status = status
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.body = body
        if length is None and isinstance(body, (bytes, bytearray)):
            length = len(body)
        self.length = length

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> "Response":
        return cls(json.dumps(data, default=str).encode(), status, "application/json", headers)

    def chunks(self, size: int) -> Iterable[bytes]:
        """The body in pieces of at most ``size`` bytes."""
        body = self.body
        if isinstance(body, bytes) and len(body) <= size:
            yield body
        elif isinstance(body, (bytes, bytearray, memoryview)):
            view = memoryview(body)
            for pos in range(0, len(view), size):
                yield bytes(view[pos:pos + size])
        elif hasattr(body, "read"):
            try:
                while True:
                    piece = body.read(size)
                    if not piece:
                        break
                    yield piece
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()
        else:
            for piece in body:
                if piece:
                    yield from (piece[i:i + size] for i in range(0, len(piece), size))


class PluginSession:
    """Per-client state of one plugin. Override ``close`` to release resources."""

    def __init__(self, plugin: "Plugin", sid: str):
        self.plugin = plugin
        self.sid = sid
        self.created = time.time()
        self.last_used = plugin.clock()

    def touch(self) -> None:
        self.last_used = self.plugin.clock()

    def idle_s(self) -> float:
        return self.plugin.clock() - self.last_used

    def close(self) -> None:
        """Release what this session holds; called once, on unregister or expiry."""

    def describe(self) -> Dict[str, Any]:
        return {"sid": self.sid, "created": self.created, "idle_s": round(self.idle_s(), 3)}


class PluginContext:
    """What the hosting process gives a plugin: where it runs and how to notify."""

    def __init__(self, endpoint: str, role: str,
                 notify: Callable[[str, str, Any], None],
                 config: Optional[Dict[str, Any]] = None,
                 facts: Optional[Dict[str, Any]] = None,
                 descriptor: Optional[PluginDescriptor] = None,
                 bridge: Any = None,
                 open_durable: Optional[Callable[..., "DurableNotes"]] = None):
        self.endpoint = endpoint
        self.role = role
        self._notify = notify
        self.config = dict(config or {})
        #: the host's facts (radical_orbit.host.host_facts), gathered once by the host
        self.facts = facts
        #: the plugin's descriptor, as the registry read it (None: made from the class)
        self.descriptor = descriptor
        #: on the bridge: its ``open_call`` to endpoints (radical_orbit.bridge.calls.BridgeCalls);
        #: None on an endpoint
        self.bridge = bridge
        #: the host's ``open_durable(plugin, stream, acked, on_acked, read)`` (see DurableNotes);
        #: None where the host has none (a plugin built by hand in a test)
        self.open_durable = open_durable


class DurableNotes:
    """A plugin's own numbered notification stream, for notifications that must reach
    the bridge exactly once even if the process dies right after deciding to send one.

    The plugin numbers its notifications (1, 2, ... with no gaps) and records each on
    disk, with its number, in the same transaction as the change it reports; then calls
    ``send``. The host keeps it until the bridge has it in its event log and then calls
    ``on_acked(seq)``: everything up to ``seq`` may be forgotten. After a restart the
    plugin opens the stream again (same id, the last acknowledged number) and sends every
    recorded one again: the bridge drops a number it already logged. This base class is
    what a host without that machinery gives: published at once, acknowledged at once.

    A plugin that can read its records back gives ``read(after, limit)``: up to ``limit``
    recorded ``(seq, topic, data)`` with ``seq > after``, ascending (called from another
    thread, never while the host holds a lock the plugin's ``send`` takes). The endpoint
    then holds only a bounded number of unacknowledged notifications in memory and reads
    the rest back when it resends them after the bridge was away; without ``read`` it
    holds every unacknowledged one."""

    def __init__(self, notify: Callable[[str, Any], None], on_acked: Callable[[int], None]):
        self._notify = notify
        self._on_acked = on_acked

    def send(self, seq: int, topic: str, data: Any) -> None:
        """Publish notification ``seq`` (safe from any thread; call in ``seq`` order)."""
        self._notify(topic, data)
        self._on_acked(seq)

    def close(self) -> None:
        """No more sends (the plugin stops): the host forgets the stream."""


class Plugin:
    """Base of every plugin. Subclasses set the class attributes and declare routes;
    what is known before import (default roles, Explorer module, client class) is in
    the plugin's descriptor (``radical_orbit.descriptor``), not here."""

    plugin_name: str = ""
    version: str = "0.1.0"
    session_class = PluginSession
    session_ttl: float = 3600.0
    #: open sessions at most: each holds memory (and, for some plugins, threads) until it
    #: is unregistered or idles out, so a caller cannot open them without bound
    max_sessions: int = 1000
    #: the monotonic clock that sessions' idle time is measured by (tests set one they can move)
    clock: Callable[[], float] = staticmethod(time.monotonic)
    ui_config: Dict[str, Any] = {}

    _sid_counter = itertools.count(1)

    @classmethod
    def is_enabled(cls, host: Dict[str, Any]) -> bool:
        """Whether this plugin is useful on ``host`` (role facts); disabled plugins still load."""
        return True

    def __init__(self, name: str, context: PluginContext):
        self.name = name
        self.context = context
        self.log = logging.getLogger("radical_orbit.plugins." + name)
        self._sessions: Dict[str, PluginSession] = {}
        self._expired: "OrderedDict[str, None]" = OrderedDict()
        self._lock = threading.Lock()

    @property
    def descriptor(self) -> PluginDescriptor:
        """The registry's descriptor of this plugin; for a class added without one, read
        from the class (``client_class``, ``ui_module`` attributes, as before descriptors)."""
        if self.context.descriptor is None:
            self.context.descriptor = PluginDescriptor.from_class(self.plugin_name or self.name, type(self))
        return self.context.descriptor

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Called once after loading: start background prefetches here."""

    def stop(self) -> None:
        """Called once on unload or shutdown; closes all sessions."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            self._close_session(session)

    def notify(self, topic: str, data: Any) -> None:
        """Publish a notification to SSE listeners; safe from any thread."""
        self.context._notify(self.name, topic, data)

    def durable_notes(self, stream: str, acked: int, on_acked: Callable[[int], None],
                      read: Optional[Callable[[int, int], List[Tuple[int, str, Any]]]] = None
                      ) -> DurableNotes:
        """Open the durable notification stream ``stream`` (an id of at most 64 characters,
        unique to what the plugin keeps on disk, e.g. a random one stored there), whose
        numbers up to ``acked`` the bridge already acknowledged; ``read`` reads recorded
        ones back (bounding the endpoint's memory); see DurableNotes."""
        if self.context.open_durable is None:
            return DurableNotes(self.notify, on_acked)
        return self.context.open_durable(self.name, stream, acked, on_acked, read)

    # -- sessions ----------------------------------------------------------
    def get_session(self, sid: str) -> PluginSession:
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and self._is_expired(session):
                del self._sessions[sid]
                self._remember_expired(sid)
                expired = session
                session = None
            else:
                expired = None
                if session is not None:
                    session.touch()
            gone = sid in self._expired
        if expired is not None:
            self._close_session(expired)
        if session is None:
            if gone:
                raise Gone("session %s of plugin %s expired or was closed" % (sid, self.name))
            raise NotFound("unknown session %s of plugin %s" % (sid, self.name))
        return session

    def expire_sessions(self) -> int:
        """Close sessions idle longer than ``session_ttl``; called periodically by the host."""
        with self._lock:
            stale = [s for s in self._sessions.values() if self._is_expired(s)]
            for session in stale:
                del self._sessions[session.sid]
                self._remember_expired(session.sid)
        for session in stale:
            self.log.info("session %s expired after %.0f s idle", session.sid, session.idle_s())
            self._close_session(session)
        return len(stale)

    def _is_expired(self, session: PluginSession) -> bool:
        return bool(self.session_ttl) and session.idle_s() > self.session_ttl

    def _remember_expired(self, sid: str) -> None:
        self._expired[sid] = None
        while len(self._expired) > EXPIRED_MEMORY:
            self._expired.popitem(last=False)

    def _close_session(self, session: PluginSession) -> None:
        try:
            session.close()
        except Exception:
            self.log.exception("closing session %s failed", session.sid)

    # -- description -------------------------------------------------------
    def describe(self, host: Dict[str, Any]) -> Dict[str, Any]:
        try:
            enabled = bool(self.is_enabled(host))
        except Exception:
            self.log.exception("is_enabled of plugin %s failed: shown as disabled", self.name)
            enabled = False
        return {"type": self.plugin_name, "namespace": "/%s/%s" % (self.context.endpoint, self.name),
                "version": self.version, "enabled": enabled,
                "ui_config": self.ui_config, "ui_module": self.descriptor.ui_module,
                "client_class": self.descriptor.client_class}

    # -- base routes -------------------------------------------------------
    @route("POST", "register_session")
    def register_session(self, req: Request) -> Dict[str, Any]:
        self.expire_sessions()
        sid = "%s.%04d.%s" % (self.name, next(self._sid_counter), uuid.uuid4().hex[:8])
        session = self.session_class(self, sid)     # cheap: what it holds starts after this
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise Unavailable("plugin %s has %d sessions open, its limit: unregister the ones "
                                  "you no longer use, or wait until idle ones expire"
                                  % (self.name, len(self._sessions)), retry_after=60)
            self._sessions[sid] = session
        return {"sid": sid}

    @route("POST", "unregister_session/{session_id}")
    def unregister_session(self, req: Request, session_id: str) -> Dict[str, Any]:
        """404 for any id that is not a live session (never existed, closed, or expired)."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is not None:
                self._remember_expired(session_id)
        if session is not None and self._is_expired(session):
            self._close_session(session)
            session = None
        if session is None:
            raise NotFound("no live session %s of plugin %s" % (session_id, self.name))
        self._close_session(session)
        return {"ok": True}

    @route("GET", "version", inline=True)
    def get_version(self, req: Request) -> Dict[str, Any]:
        return {"name": self.name, "type": self.plugin_name, "version": self.version}

    @route("GET", "list_sessions", inline=True)
    def list_sessions(self, req: Request) -> Dict[str, Any]:
        with self._lock:
            sessions = [s.describe() for s in self._sessions.values() if not self._is_expired(s)]
        return {"sessions": sessions}

    @route("GET", "health", inline=True)
    def health(self, req: Request) -> Dict[str, Any]:
        with self._lock:
            count = len(self._sessions)
        return {"status": "ok", "plugin": self.name, "sessions": count, "pid": os.getpid()}

    @route("GET", "ui_config", inline=True)
    def get_ui_config(self, req: Request) -> Dict[str, Any]:
        return {"ui_config": self.ui_config, "ui_module": self.descriptor.ui_module}
