"""The bridge <-> endpoint wire protocol (see docs/protocol.md): the envelope and
one schema for every message kind.

Every WebSocket message is one binary frame holding a msgpack map with the
protocol version ``v``, the kind ``k`` and the kind's fields. Bodies travel as
raw bytes, in chunks of at most ``chunk`` bytes with per-stream credit.

Both ends read every message through ``decode``, which checks the envelope and
then the kind's schema (``check``): keys, types and sizes. What a peer sends is
therefore either a well-formed message or a ``ProtocolError`` that says what is
wrong, never a ``KeyError`` deep in a handler.
"""
import functools
import math
from typing import Any, Callable, Collection, Dict, FrozenSet, Optional, Tuple

import msgpack

from . import names

VERSION = 1

# endpoint -> bridge
HELLO = "hello"        # name, resume, pid, endpoint, plugins, notes {stream, acked, durable?}
RESPONSE = "res"       # id, status, headers, body, end, length
NOTE = "note"          # plugin, topic, data, ts, stream, seq
PLUGINS = "plugins"    # plugins: the endpoint's plugin table after a change
# bridge -> endpoint
WELCOME = "welcome"    # resume, settings, notes {acked}
ACK = "ack"            # stream, seq: the stream's notifications up to seq are in the event log
REFUSE = "refuse"      # status, detail, retry
REQUEST = "req"        # id, method, path, query, headers, body, end, length, deadline
SHUTDOWN = "shutdown"  # reason
# both ways
DATA = "data"          # id, body, end: the next chunk of a request or response body
CREDIT = "credit"      # id, n: the receiver consumed n bytes, the sender may send n more
CANCEL = "cancel"      # id, detail: the stream is abandoned (client gone, deadline, error)
ERROR = "error"        # detail, id, fatal: the peer broke the protocol

KINDS = frozenset((HELLO, RESPONSE, NOTE, PLUGINS, WELCOME, ACK, REFUSE, REQUEST, SHUTDOWN,
                   DATA, CREDIT, CANCEL, ERROR))
#: What each side accepts once registered (the handshake accepts only its one reply).
TO_BRIDGE = frozenset((RESPONSE, DATA, CREDIT, CANCEL, NOTE, PLUGINS, ERROR))
TO_ENDPOINT = frozenset((REQUEST, ACK, DATA, CREDIT, CANCEL, SHUTDOWN, ERROR))
HANDSHAKE_REPLIES = frozenset((WELCOME, REFUSE, ERROR))
#: The longest notification stream id an endpoint may choose (it makes a random one).
MAX_STREAM_ID = 64
MAX_DURABLE_STREAMS = 64        # plugins' durable notification streams one endpoint may have

#: Defaults the bridge announces in WELCOME; the endpoint follows them.
DEFAULT_SETTINGS = {
    "chunk": 256 * 1024,      # bytes of body per message
    "window": 2 * 2**20,      # bytes in flight per stream before credit is needed
    "ping_interval": 10.0,    # s between pings; a peer silent for 3 intervals is dead
}

# -- size bounds ---------------------------------------------------------------------
#: A message can never be larger than a chunk plus its envelope.
MAX_MESSAGE = 4 * 2**20
#: What an endpoint says about itself (a hello, a plugin table update), encoded: the
#: topology every SSE listener receives is the sum of these, so each stays small.
MAX_DESCRIPTION = 64 * 1024
#: One plugin's description in the table, encoded.
MAX_PLUGIN_DESCRIPTION = 16 * 1024
#: A plugin's ``ui_config``, encoded.
MAX_UI_CONFIG = 8 * 1024
#: Plugin instances one endpoint may list.
MAX_PLUGINS = 128
#: Free text: paths, queries, header values, details.
MAX_TEXT = 64 * 1024
#: Short words: names, methods, topics, header names, resume keys.
MAX_LABEL = 256
#: Headers of one request or response.
MAX_HEADERS = 256
#: Nesting of maps and arrays in free-form data (notification data, descriptions).
MAX_DEPTH = 32
#: Ids, counts and lengths are non-negative and fit in 64 signed bits.
MAX_UINT = 2**63 - 1
#: Maps and arrays in one message. An empty map is one byte on the wire and some 70 in
#: memory: a 4 MiB message of them would cost 300 MB to unpack. Each costs at least one
#: byte, so a message of at most this many bytes is unpacked without counting.
MAX_CONTAINERS = 2**17


class ProtocolError(ValueError):
    """A message that breaks the protocol.

    ``fatal``: the peer does not speak the protocol (not msgpack, another version, a
    bad hello): the link closes. Otherwise only this message is refused; ``id`` is the
    stream it concerned when it carried a usable one, ``kind`` its kind.
    """

    def __init__(self, detail: str, fatal: bool = True, id: Optional[int] = None,
                 kind: Optional[str] = None):
        super().__init__(detail)
        self.detail = detail
        self.fatal = fatal
        self.id = id
        self.kind = kind


def encode(kind: str, **fields: Any) -> bytes:
    """Pack one message; values msgpack does not know (dates, sets, ...) go as strings."""
    fields["v"] = VERSION
    fields["k"] = kind
    return msgpack.packb(fields, use_bin_type=True, default=_fallback)


def _fallback(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def decode(raw: bytes, accepted: Collection[str] = KINDS) -> Dict[str, Any]:
    """The message in ``raw``, checked against its kind's schema; ``accepted`` are the
    kinds the receiver expects here (another known kind is refused, not fatal)."""
    if not isinstance(raw, (bytes, bytearray)):
        raise ProtocolError("expected a binary frame, got text")
    size = len(raw)
    if size > MAX_MESSAGE:
        raise ProtocolError("message of %d bytes exceeds the %d-byte limit" % (size, MAX_MESSAGE))
    if size > MAX_DESCRIPTION:
        # a hello is refused by its size before it is unpacked, not after
        limit, fatal = _size_limit(frozenset(accepted))
        if size > limit:
            raise ProtocolError("message refused unread: %d bytes exceed the %d-byte limit of a %s"
                                % (size, limit, " or ".join(sorted(accepted))), fatal)
    try:
        if size <= MAX_CONTAINERS:
            msg = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        else:
            count = _ContainerCount()
            msg = msgpack.unpackb(raw, raw=False, strict_map_key=True, object_hook=count, list_hook=count)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError("undecodable message: %s" % (str(exc) or type(exc).__name__))
    if not isinstance(msg, dict):
        raise ProtocolError("message is not a map")
    version = msg.get("v")
    if version != VERSION:
        raise ProtocolError("unsupported protocol version %r; this peer speaks %d" % (version, VERSION))
    return check(msg, accepted, len(raw))


@functools.lru_cache(maxsize=None)
def _size_limit(accepted: FrozenSet[str]) -> Tuple[int, bool]:
    """The most bytes a message of the ``accepted`` kinds may take, and whether going
    over is fatal; worked out once per set of kinds, not for every large DATA message."""
    specs = [SCHEMA[kind] for kind in accepted if kind in SCHEMA]
    return max(spec.max_size for spec in specs), all(spec.fatal for spec in specs)


class _ContainerCount:
    """An unpack hook that refuses a message of more than MAX_CONTAINERS maps and arrays,
    while it is unpacked (so the memory it takes stays bounded)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_CONTAINERS

    def __call__(self, container: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise ProtocolError("message holds more than %d maps and arrays" % MAX_CONTAINERS)
        return container


# -- the schema -----------------------------------------------------------------------
class _Invalid(Exception):
    """Raised by a deep check with the precise reason (which plugin, which key)."""


class Field:
    """One key of a kind: the types its value may have (None: any JSON-able value, which
    ``test`` checks) and, if needed, a further test. An absent key and nil are the same;
    a required key must be there and not nil."""

    __slots__ = ("key", "required", "types", "test", "what")

    def __init__(self, key: str, what: str, types: Optional[Tuple[type, ...]],
                 test: Optional[Callable[[Any], bool]] = None, required: bool = False):
        self.key, self.what, self.types, self.test, self.required = key, what, types, test, required


class Kind:
    """A message kind: its fields and the most bytes one may take. A violation is fatal
    (the link closes) for the handshake kinds only."""

    __slots__ = ("name", "fields", "rules", "max_size", "fatal", "streamed")

    def __init__(self, name: str, *fields: Field, max_size: int = MAX_MESSAGE, fatal: bool = False):
        self.name, self.fields, self.max_size, self.fatal = name, fields, max_size, fatal
        self.streamed = any(f.key == "id" for f in fields)
        # what check() reads on every message, unpacked once
        self.rules = tuple((f.key, f.types, f.test, f.required, f) for f in fields)


def _uint(value: Any) -> bool:
    return 0 <= value <= MAX_UINT


def _finite(value: Any) -> bool:
    return -math.inf < value < math.inf


def _label(value: Any) -> bool:
    return len(value) <= MAX_LABEL


def _text(value: Any) -> bool:
    return len(value) <= MAX_TEXT


def _headers(value: Dict[Any, Any]) -> bool:
    if len(value) > MAX_HEADERS:
        raise _Invalid("has %d headers, more than %d" % (len(value), MAX_HEADERS))
    for key, item in value.items():
        if type(key) is not str or type(item) is not str or len(key) > MAX_LABEL or len(item) > MAX_TEXT:
            raise _Invalid("must map header names (str, at most %d characters) to values (str, at "
                           "most %d characters); got %s: %s" % (MAX_LABEL, MAX_TEXT, _show(key), _show(item)))
    return True


def _json_like(value: Any, depth: int = 0) -> None:
    """Data the bridge turns into JSON for SSE listeners and the Explorer: map keys are
    str, numbers are finite, nesting is bounded (bytes go as their repr)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is bytes or value is None:
        return
    if kind is float:
        if not _finite(value):
            raise _Invalid("holds %r, which JSON cannot carry" % value)
        return
    if depth >= MAX_DEPTH:
        raise _Invalid("is nested deeper than %d levels" % MAX_DEPTH)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise _Invalid("has a map key that is not a str: %s" % _show(key))
            _json_like(item, depth + 1)
    elif kind is list:
        for item in value:
            _json_like(item, depth + 1)
    else:
        raise _Invalid("holds a %s, which JSON cannot carry" % kind.__name__)


def _json_value(value: Any) -> bool:
    _json_like(value)
    return True


def _plugin_table(table: Dict[Any, Any]) -> bool:
    """The plugin table of a hello or a ``plugins`` update, bounded in count and size."""
    if len(table) > MAX_PLUGINS:
        raise _Invalid("lists %d plugins, more than %d" % (len(table), MAX_PLUGINS))
    seen = set()
    for name, description in table.items():
        if not names.is_name(name):
            raise _Invalid("has an invalid plugin instance name %s" % _show(name))
        folded = names.fold(name)
        if folded in seen:
            raise _Invalid("lists plugin %r twice (instance names are compared case-insensitively)" % name)
        seen.add(folded)
        if type(description) is not dict:
            raise _Invalid("describes plugin %r with %s, not a map" % (name, _show(description)))
        try:
            _json_like(description, 1)
        except _Invalid as exc:
            raise _Invalid("describes plugin %r with data that %s" % (name, exc))
        ui_config = description.get("ui_config")
        if ui_config is not None:
            if type(ui_config) is not dict:
                raise _Invalid("gives plugin %r a ui_config that is not a map" % name)
            size = len(msgpack.packb(ui_config, use_bin_type=True))
            if size > MAX_UI_CONFIG:
                raise _Invalid("gives plugin %r a ui_config of %d bytes, more than %d"
                               % (name, size, MAX_UI_CONFIG))
        size = len(msgpack.packb(description, use_bin_type=True))
        if size > MAX_PLUGIN_DESCRIPTION:
            raise _Invalid("describes plugin %r in %d bytes, more than %d"
                           % (name, size, MAX_PLUGIN_DESCRIPTION))
    return True


def _settings(settings: Dict[Any, Any]) -> bool:
    """What the endpoint will follow: a chunk fits in a message, a window holds a chunk."""
    chunk = settings.get("chunk", DEFAULT_SETTINGS["chunk"])
    window = settings.get("window", DEFAULT_SETTINGS["window"])
    interval = settings.get("ping_interval", DEFAULT_SETTINGS["ping_interval"])
    if type(chunk) is not int or not 1 <= chunk <= MAX_MESSAGE // 2:
        raise _Invalid("'chunk' must be an int from 1 to %d, got %s" % (MAX_MESSAGE // 2, _show(chunk)))
    if type(window) is not int or not chunk <= window <= MAX_UINT:
        raise _Invalid("'window' must be an int of at least 'chunk', got %s" % _show(window))
    if type(interval) not in (int, float) or not 0 < interval <= 86400:
        raise _Invalid("'ping_interval' must be a number of seconds in (0, 86400], got %s" % _show(interval))
    return True


def _stream_id(value: Any) -> bool:
    return 0 < len(value) <= MAX_STREAM_ID


def _notes(value: Dict[Any, Any], keys: Tuple[str, ...]) -> bool:
    """The ``notes`` map of a hello (``stream``, ``acked``) or a welcome (``acked``)."""
    stream, acked = value.get("stream"), value.get("acked", 0)
    if "stream" in keys and (type(stream) is not str or not _stream_id(stream)):
        raise _Invalid("needs 'stream', a str of 1 to %d characters, got %s" % (MAX_STREAM_ID, _show(stream)))
    if type(acked) is not int or not _uint(acked):
        raise _Invalid("needs 'acked', an int from 0 to 2**63-1, got %s" % _show(acked))
    durable = value.get("durable", {})
    if type(durable) is not dict or len(durable) > MAX_DURABLE_STREAMS or not all(
            type(s) is str and _stream_id(s) and type(n) is int and _uint(n) for s, n in durable.items()):
        raise _Invalid("'durable' must map at most %d stream ids to ints from 0 to 2**63-1"
                       % MAX_DURABLE_STREAMS)
    return True


_INT, _NUMBER, _STR, _BYTES, _BOOL, _MAP = (int,), (int, float), (str,), (bytes,), (bool,), (dict,)


def _id(required: bool = True) -> Field:
    return Field("id", "a stream id (an int from 0 to 2**63-1)", _INT, _uint, required)


def _detail(required: bool = False) -> Field:
    return Field("detail", "a str of at most %d characters" % MAX_TEXT, _STR, _text, required)


_BODY = Field("body", "bytes (msgpack bin)", _BYTES)
_END = Field("end", "a bool", _BOOL)
_LENGTH = Field("length", "a byte count (an int from 0 to 2**63-1) or nil", _INT, _uint)
_HEADER_MAP = Field("headers", "a map of str to str", _MAP, _headers)
_STATUS = Field("status", "an HTTP status (an int from 100 to 599)", _INT,
                lambda v: 100 <= v <= 599, required=True)
_LABEL_WHAT = "a str of at most %d characters" % MAX_LABEL
_STREAM_WHAT = "a notification stream id (a str of 1 to %d characters)" % MAX_STREAM_ID
_SEQ_WHAT = "a notification number (an int from 1 to 2**63-1)"
_PLUGINS_WHAT = "the plugin table: a map of plugin instance names to maps"

SCHEMA: Dict[str, Kind] = {k.name: k for k in (
    Kind(HELLO,
         Field("name", _LABEL_WHAT, _STR, _label, required=True),
         Field("resume", _LABEL_WHAT + " or nil", _STR, _label),
         Field("pid", "a process id (a non-negative int)", _INT, _uint),
         Field("endpoint", "a map with str keys", _MAP, _json_value),
         Field("plugins", _PLUGINS_WHAT, _MAP, _plugin_table),
         Field("notes", "a map {stream, acked}", _MAP, lambda v: _notes(v, ("stream", "acked"))),
         max_size=MAX_DESCRIPTION, fatal=True),
    Kind(WELCOME,
         Field("resume", _LABEL_WHAT, _STR, _label, required=True),
         Field("settings", "a map of settings", _MAP, _settings),
         Field("notes", "a map {acked}", _MAP, lambda v: _notes(v, ("acked",))),
         fatal=True),
    Kind(ACK,
         Field("stream", _STREAM_WHAT, _STR, _stream_id, required=True),
         Field("seq", "a notification number (an int from 0 to 2**63-1)", _INT, _uint, required=True)),
    Kind(REFUSE,
         Field("status", "an HTTP status (an int from 100 to 599)", _INT, lambda v: 100 <= v <= 599,
               required=True),
         _detail(required=True),
         Field("retry", "a bool", _BOOL),
         fatal=True),
    Kind(REQUEST,
         _id(),
         Field("method", _LABEL_WHAT, _STR, _label, required=True),
         Field("path", "a str of at most %d characters" % MAX_TEXT, _STR, _text, required=True),
         Field("query", "a str of at most %d characters" % MAX_TEXT, _STR, _text),
         _HEADER_MAP, _BODY, _END, _LENGTH,
         Field("deadline", "a number of seconds", _NUMBER, lambda v: 0 <= v < math.inf)),
    Kind(RESPONSE, _id(), _STATUS, _HEADER_MAP, _BODY, _END, _LENGTH),
    Kind(DATA, _id(), _BODY, _END),
    Kind(CREDIT, _id(), Field("n", "a byte count (an int from 0 to 2**63-1)", _INT, _uint, required=True)),
    Kind(CANCEL, _id(), _detail()),
    Kind(NOTE,
         Field("plugin", _LABEL_WHAT, _STR, _label, required=True),
         Field("topic", _LABEL_WHAT, _STR, _label, required=True),
         Field("data", "data JSON can carry (str map keys, finite numbers)", None, _json_value),
         Field("ts", "a finite number (seconds since the epoch)", _NUMBER, _finite),
         Field("stream", _STREAM_WHAT, _STR, _stream_id),
         Field("seq", _SEQ_WHAT, _INT, lambda v: 1 <= v <= MAX_UINT)),
    Kind(PLUGINS, Field("plugins", _PLUGINS_WHAT, _MAP, _plugin_table, required=True),
         max_size=MAX_DESCRIPTION),
    Kind(SHUTDOWN, Field("reason", "a str of at most %d characters" % MAX_TEXT, _STR, _text)),
    Kind(ERROR, _detail(required=True), _id(required=False), Field("fatal", "a bool", _BOOL)),
)}


def check(msg: Dict[str, Any], accepted: Collection[str] = KINDS, size: int = 0) -> Dict[str, Any]:
    """``msg`` if it is a well-formed message of a kind in ``accepted`` (of at most its
    kind's bytes, given ``size``); else ProtocolError naming what is wrong. Fields
    the schema does not name are left alone (newer peers may add optional ones)."""
    kind = msg.get("k")
    spec = SCHEMA.get(kind) if type(kind) is str else None
    if spec is None or kind not in accepted:
        # no id: what an id means in a kind this side does not take is unknown, and a
        # newer peer's new kind must not end a stream here
        what = "unknown message kind %s" % _show(kind) if spec is None else "unexpected %s message" % kind
        raise ProtocolError(what, False, None, kind)
    if size > spec.max_size:
        raise _violation(spec, msg, "%d bytes exceed the %d-byte limit of a %s" % (size, spec.max_size, kind))
    for key, types, test, required, field in spec.rules:
        value = msg.get(key)
        if value is None:
            if required:
                raise _violation(spec, msg, "%r is missing" % key)
            continue
        try:
            if (types is None or type(value) in types) and (test is None or test(value)):
                continue
        except _Invalid as exc:
            raise _violation(spec, msg, "%r %s" % (key, exc))
        raise _violation(spec, msg, "%r must be %s, got %s" % (key, field.what, _show(value)))
    return msg


def _violation(spec: Kind, msg: Dict[str, Any], problem: str) -> ProtocolError:
    rid = _usable_id(msg) if spec.streamed else None
    return ProtocolError("malformed %s message: %s" % (spec.name, problem), spec.fatal, rid, spec.name)


def _usable_id(msg: Dict[str, Any]) -> Optional[int]:
    rid = msg.get("id")
    return rid if type(rid) is int and 0 <= rid <= MAX_UINT else None


def _show(value: Any) -> str:
    """A value in an error message: its type, and a short repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return "%s %s" % (type(value).__name__, text)
